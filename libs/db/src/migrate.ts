import { Kysely, Migration, MigrationProvider, Migrator, NO_MIGRATIONS } from 'kysely';
import * as m0001 from './migrations/0001_init';
import * as m0002 from './migrations/0002_queued_at';
import * as m0004 from './migrations/0004_node_isolation';
import * as m0005 from './migrations/0005_gateway_instances';
import * as m0006 from './migrations/0006_researcher_jobs';
import * as m0007 from './migrations/0007_log_relay';
import * as m0003 from './migrations/0003_user_disable_token_parent';
import * as m0008 from './migrations/0008_jobs_fillfactor';
import * as m0009 from './migrations/0009_listing_indexes';
import * as m0010 from './migrations/0010_change_tracking';
import * as m0011 from './migrations/0011_usage_ledger';
import * as m0012 from './migrations/0012_gpu_prices';
import * as m0013 from './migrations/0013_usage_tenant_daily';
import * as m0014 from './migrations/0014_history_indexes';
import * as m0015 from './migrations/0015_node_change_tracking';
import * as m0016 from './migrations/0016_job_waits_unchecked';
import * as m0017 from './migrations/0017_allocations_node_key';
import * as m0018 from './migrations/0018_job_waits_reason_hash';
import * as m0019 from './migrations/0019_node_change_indexes';

/** Migrations are compiled in (not read from disk) so the same list runs from source, dist and tests. */
const migrations: Record<string, Migration> = {
  '0001_init': m0001,
  '0002_queued_at': m0002,
  '0004_node_isolation': m0004,
  '0005_gateway_instances': m0005,
  '0006_researcher_jobs': m0006,
  '0007_log_relay': m0007,
  '0003_user_disable_token_parent': m0003,
  '0008_jobs_fillfactor': m0008,
  '0009_listing_indexes': m0009,
  '0010_change_tracking': m0010,
  '0011_usage_ledger': m0011,
  '0012_gpu_prices': m0012,
  '0013_usage_tenant_daily': m0013,
  '0014_history_indexes': m0014,
  '0015_node_change_tracking': m0015,
  '0016_job_waits_unchecked': m0016,
  '0017_allocations_node_key': m0017,
  '0018_job_waits_reason_hash': m0018,
  '0019_node_change_indexes': m0019,
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
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations run before and across schemas: Kysely's Migrator takes Kysely<any>
export async function migrateToLatest(db: Kysely<any>): Promise<string[]> {
  const migrator = new Migrator({ db, provider: new StaticProvider() });
  const { error, results } = await migrator.migrateToLatest();
  if (error) throw error instanceof Error ? error : new Error(String(error));
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

/** Undoes every migration (tests start from an empty schema). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations run before and across schemas: Kysely's Migrator takes Kysely<any>
export async function migrateDown(db: Kysely<any>): Promise<void> {
  await migrateTo(db, NO_MIGRATIONS);
}

/**
 * Migrates up or down to exactly `target` (a migration name; NO_MIGRATIONS for none), so
 * tests can put data in an older schema and check what a later migration makes of it.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations run before and across schemas: Kysely's Migrator takes Kysely<any>
export async function migrateTo(db: Kysely<any>, target: string | typeof NO_MIGRATIONS): Promise<string[]> {
  const migrator = new Migrator({ db, provider: new StaticProvider() });
  const { error, results } = await migrator.migrateTo(target);
  if (error) throw error instanceof Error ? error : new Error(String(error));
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
