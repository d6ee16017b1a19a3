import { sql } from 'kysely';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, TestDatabase } from './testing';

describe('a PostgreSQL connection terminated under a process (real PostgreSQL)', () => {
  let tdb: TestDatabase;
  beforeAll(async () => {
    tdb = await createTestDatabase();
  });
  afterAll(async () => {
    await tdb?.drop();
  });

  it('fails the transaction that held it, does not crash the process, and the pool goes on', async () => {
    const admin = new Client({ connectionString: tdb.url });
    await admin.connect();
    const attempt = tdb.handle.db.transaction().execute(async (tx) => {
      const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(tx);
      await admin.query('select pg_terminate_backend($1)', [rows[0]!.pid]);
      // The connection's 'error' arrives while no statement runs (it used to be unhandled).
      await new Promise((r) => setTimeout(r, 300));
      await sql`select 1`.execute(tx);
    });
    await expect(attempt).rejects.toThrow();
    await admin.end();
    const { rows } = await sql<{ one: number }>`select 1 as one`.execute(tdb.handle.db);
    expect(rows).toEqual([{ one: 1 }]);
  });
});
