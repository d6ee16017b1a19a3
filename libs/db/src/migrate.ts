import { Kysely, Migration, MigrationProvider, Migrator } from 'kysely';
import * as m0001 from './migrations/0001_init';

/** Migrations are compiled in (not read from disk) so the same list runs from source, dist and tests. */
const migrations: Record<string, Migration> = {
  '0001_init': m0001,
};

class StaticProvider implements MigrationProvider {
  async getMigrations() {
    return migrations;
  }
}

/**
 * Brings the schema up to date. Kysely's Migrator takes a lock row in its own table
 * inside a transaction, so two processes starting at once run each migration once.
 */
export async function migrateToLatest(db: Kysely<any>): Promise<string[]> {
  const migrator = new Migrator({ db, provider: new StaticProvider() });
  const { error, results } = await migrator.migrateToLatest();
  if (error) throw error instanceof Error ? error : new Error(String(error));
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

export async function migrateDown(db: Kysely<any>): Promise<void> {
  const migrator = new Migrator({ db, provider: new StaticProvider() });
  const { error } = await migrator.migrateTo(Object.keys(migrations)[0]!);
  if (error) throw error;
  const r = await migrator.migrateDown();
  if (r.error) throw r.error;
}
