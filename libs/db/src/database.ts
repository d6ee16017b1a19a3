import { mkdirSync } from 'node:fs';
import { Kysely, PostgresDialect, sql } from 'kysely';
import { Pool, types } from 'pg';
import { PGliteDialect } from './pglite-dialect';
import { RowStream } from './row-stream';
import type { Database } from './schema';

// Read int8 (bigint) as a number: sequence numbers and ids stay far below 2^53.
types.setTypeParser(20, (v) => Number(v));

export type DatabaseKind = 'postgres' | 'pglite';

export interface DatabaseHandle {
  db: Kysely<Database>;
  kind: DatabaseKind;
  /**
   * Tries to take a session-level advisory lock on a connection of its own, held until
   * release() (or the process dies). Returns null when another session holds it.
   */
  tryAdvisoryLock(key: number): Promise<AdvisoryLock | null>;
  close(): Promise<void>;
}

export interface AdvisoryLock {
  /**
   * False once the session holding the lock is gone (connection dropped, server restarted):
   * the lock went with it and another process may hold it now.
   */
  alive(timeoutMs?: number): Promise<boolean>;
  release(): Promise<void>;
}

export interface DatabaseOptions {
  /** postgres://… for a real server; undefined for the embedded PGlite. */
  url?: string;
  /** Where PGlite keeps its files; 'memory://' for a throw-away database. */
  dataDir?: string;
  poolSize?: number;
}

export async function openDatabase(options: DatabaseOptions): Promise<DatabaseHandle> {
  if (options.url) return openPostgres(options.url, options.poolSize ?? 10);
  return openPGlite(options.dataDir ?? 'memory://');
}

async function openPostgres(url: string, poolSize: number): Promise<DatabaseHandle> {
  const pool = new Pool({ connectionString: url, max: poolSize });
  // A dropped idle connection must not take the process down.
  pool.on('error', () => undefined);
  // Nor one checked out (pg-pool removes its listener then): a backend terminated between two
  // statements of a transaction emits 'error' with no query to fail, which would crash the
  // process. The statement in flight still fails, and the dead client leaves the pool on release.
  pool.on('connect', (client) => client.on('error', () => undefined));
  // `cursor`: what `stream()` reads with (rows handed on as they arrive, see RowStream).
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool, cursor: RowStream }) });
  await sql`select 1`.execute(db);
  return {
    db,
    kind: 'postgres',
    async tryAdvisoryLock(key) {
      const client = await pool.connect();
      try {
        const r = await client.query<{ ok: boolean }>('select pg_try_advisory_lock($1) as ok', [key]);
        if (!r.rows[0]?.ok) {
          client.release();
          return null;
        }
      } catch (e) {
        client.release(true);
        throw e;
      }
      let lost = false;
      client.on('error', () => (lost = true));
      client.on('end', () => (lost = true));
      return {
        async alive(timeoutMs = 10_000) {
          if (lost) return false;
          try {
            // Still our session, and still holding the lock?
            const r = await Promise.race([
              client.query<{ held: boolean }>(
                `select exists(select 1 from pg_locks where locktype = 'advisory' and pid = pg_backend_pid() and objid = $1::bigint and granted) as held`,
                [key],
              ),
              // A dead connection would hang the check for ever. The timeout defers to the I/O
              // callbacks first (setImmediate): after a long synchronous stretch (a plan over
              // 100,000 jobs on a loaded machine) timers run before I/O, and a reply that had
              // arrived in time lost the race, so a healthy leader stepped down and leadership
              // flapped between two processes.
              new Promise<never>((_, no) => setTimeout(() => setImmediate(() => no(new Error('lock check timed out'))), timeoutMs).unref()),
            ]);
            return (lost = !r.rows[0]?.held) === false;
          } catch {
            lost = true;
            return false;
          }
        },
        async release() {
          try {
            if (!lost) await client.query('select pg_advisory_unlock($1)', [key]);
          } finally {
            client.release(true);
          }
        },
      };
    },
    close: () => db.destroy(),
  };
}

async function openPGlite(dataDir: string): Promise<DatabaseHandle> {
  const { PGlite } = await import('@electric-sql/pglite');
  if (!dataDir.startsWith('memory://')) mkdirSync(dataDir, { recursive: true });
  const pglite = await PGlite.create(dataDir);
  const db = new Kysely<Database>({ dialect: new PGliteDialect(pglite) });
  let held = false;
  return {
    db,
    kind: 'pglite',
    // One process owns an embedded database, so the lock is a flag.
    async tryAdvisoryLock() {
      if (held) return null;
      held = true;
      return {
        async alive() {
          return !pglite.closed;
        },
        async release() {
          held = false;
        },
      };
    },
    close: () => db.destroy(),
  };
}
