import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { DatabaseHandle, openDatabase } from './database';
import { migrateToLatest } from './migrate';

/** The server tests create their databases on: DATABASE_URL, or the local default. */
export function testServerUrl(): string {
  return process.env.NURI_TEST_DATABASE_URL ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
}

export interface TestDatabase {
  url: string;
  handle: DatabaseHandle;
  drop(): Promise<void>;
}

/**
 * A fresh, migrated database on the real PostgreSQL server, one per test file, dropped
 * afterwards. Fails loudly when no server answers: these tests must not pass by skipping.
 */
export async function createTestDatabase(): Promise<TestDatabase> {
  const serverUrl = testServerUrl();
  const name = `nuri_test_${process.pid}_${randomBytes(4).toString('hex')}`;
  const admin = new Client({ connectionString: serverUrl });
  try {
    await admin.connect();
  } catch (e) {
    throw new Error(`no PostgreSQL server answers at ${serverUrl} (set DATABASE_URL): ${(e as Error).message}`, { cause: e });
  }
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const handle = await openDatabase({ url: url.toString(), poolSize: 5 });
  await migrateToLatest(handle.db);
  return {
    url: url.toString(),
    handle,
    async drop() {
      await handle.close();
      const c = new Client({ connectionString: serverUrl });
      await c.connect();
      await c.query(`drop database if exists ${name} with (force)`);
      await c.end();
    },
  };
}

/**
 * The database kinds users meet, for `describe.each(DATABASE_KINDS)`: a fresh database on the
 * real PostgreSQL, and a migrated in-memory PGlite.
 */
export const DATABASE_KINDS = [
  ['real PostgreSQL', async (): Promise<TestDatabase> => createTestDatabase()],
  [
    'embedded PGlite',
    async (): Promise<TestDatabase> => {
      const handle = await openDatabase({});
      await migrateToLatest(handle.db);
      return { url: 'memory://', handle, drop: () => handle.close() };
    },
  ],
] as const;
