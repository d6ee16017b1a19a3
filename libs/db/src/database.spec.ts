import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Kysely, sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { DatabaseHandle, openDatabase } from './database';
import { migrateDown, migrateTo, migrateToLatest } from './migrate';

// Every migration file in migrations/, in order: one left out of migrate.ts's list fails here.
const ALL = readdirSync(join(__dirname, 'migrations'))
  .filter((f) => /^\d{4}_.*\.ts$/.test(f))
  .map((f) => f.replace(/\.ts$/, ''))
  .sort();
/** The 0002 tests below work between 0001 and 0002 only, whatever comes after. */
const at0001 = async (db: Kysely<any>) => (await migrateTo(db, '0001_init')).filter((m) => m <= '0002_queued_at');

describe('embedded database', () => {
  it('migrates, and migrating twice is a no-op', async () => {
    const h = await openDatabase({});
    expect(await migrateToLatest(h.db)).toEqual(ALL);
    expect(await migrateToLatest(h.db)).toEqual([]);
    const r = await sql<{ n: number }>`select count(*)::int as n from tenants`.execute(h.db);
    expect(r.rows[0]!.n).toBe(0);
    await h.close();
  });
});

describe('real PostgreSQL', () => {
  it('runs migrations once when two processes start at the same time', async () => {
    const { createTestDatabase } = await import('./testing');
    const scratch = await createTestDatabase();
    try {
      await migrateDown(scratch.handle.db);
      const other = await openDatabase({ url: scratch.url });
      const [a, b] = await Promise.all([migrateToLatest(scratch.handle.db), migrateToLatest(other.db)]);
      expect([...a, ...b]).toEqual(ALL);
      await other.close();
    } finally {
      await scratch.drop();
    }
  });
});

describe('the scheduler lock on real PostgreSQL', () => {
  it('stays held when its check was answered while the event loop was busy past the timeout', async () => {
    const { createTestDatabase } = await import('./testing');
    const scratch = await createTestDatabase();
    try {
      const lock = (await scratch.handle.tryAdvisoryLock(4242))!;
      expect(lock).not.toBeNull();
      try {
        const check = lock.alive(200);
        // A long synchronous stretch (a big plan): the reply arrives meanwhile, the timer is due too.
        const until = Date.now() + 600;
        while (Date.now() < until);
        expect(await check).toBe(true);
        expect(await scratch.handle.tryAdvisoryLock(4242)).toBeNull();
      } finally {
        await lock.release();
      }
    } finally {
      await scratch.drop();
    }
  });
});

const t = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s));

/** Jobs written as the 0001 schema knew them: no queued_at yet. */
async function seedUnder0001(db: Kysely<any>) {
  const tenant = (await sql<{ id: string }>`insert into tenants (name, display_name) values ('naver', 'Naver') returning id`.execute(db)).rows[0]!.id;
  const user = (await sql<{ id: string }>`insert into users (name, tenant_id, role) values ('alice', ${tenant}, 'researcher') returning id`.execute(db)).rows[0]!.id;
  const job = async (name: string, state: string, submittedAt: Date) =>
    (
      await sql<{ id: string }>`
        insert into jobs (tenant_id, user_id, name, state, gpus, gpu_type, priority, time_limit_seconds, command, env, submitted_at)
        values (${tenant}, ${user}, ${name}, ${state}, 1, 'h100', 'normal', 60, '[]'::jsonb, '{}'::jsonb, ${submittedAt})
        returning id`.execute(db)
    ).rows[0]!.id;
  const transition = (jobId: string, at: Date, from: string | null, to: string) =>
    sql`insert into job_transitions (job_id, at, from_state, to_state, reason) values (${jobId}, ${at}, ${from}, ${to}, 'test')`.execute(db);
  // Requeued after a preemption and running again: it last entered the queue at t(20).
  const requeued = await job('requeued', 'running', t(0));
  await transition(requeued, t(0), null, 'pending');
  await transition(requeued, t(10), 'pending', 'running');
  await transition(requeued, t(20), 'running', 'pending');
  await transition(requeued, t(30), 'pending', 'running');
  // Only ever submitted.
  const waiting = await job('waiting', 'pending', t(5));
  await transition(waiting, t(5), null, 'pending');
  // No transitions at all: falls back to its submission.
  const bare = await job('bare', 'pending', t(7));
  return { requeued, waiting, bare };
}

/** Each migration test on both databases, each test with a fresh one migrated to the latest. */
const BOTH_DATABASES = [
  ['real PostgreSQL', async () => (await import('./testing')).createTestDatabase()],
  ['embedded PGlite', async () => {
    const handle = await openDatabase({});
    await migrateToLatest(handle.db);
    return { handle, drop: () => handle.close() };
  }],
] as const;

describe.each(BOTH_DATABASES)('0002_queued_at on %s', (_kind, open) => {
  const withDb = async (f: (h: DatabaseHandle) => Promise<void>) => {
    const d: { handle: DatabaseHandle; drop(): Promise<void> } = await open();
    try {
      await f(d.handle);
    } finally {
      await d.drop();
    }
  };
  const queuedAt = async (db: Kysely<any>) =>
    Object.fromEntries((await sql<{ name: string; queued_at: Date }>`select name, queued_at from jobs`.execute(db)).rows.map((r) => [r.name, r.queued_at]));

  it('backfills queued_at from the latest move to pending, else the submission, and requires it after', () =>
    withDb(async (h) => {
      expect(await at0001(h.db)).toEqual(['0002_queued_at']);
      await seedUnder0001(h.db);
      expect(await migrateTo(h.db, '0002_queued_at')).toEqual(['0002_queued_at']);
      expect(await queuedAt(h.db)).toEqual({ requeued: t(20), waiting: t(5), bare: t(7) });
      const col = await sql<{ is_nullable: string }>`select is_nullable from information_schema.columns where table_name = 'jobs' and column_name = 'queued_at'`.execute(h.db);
      expect(col.rows).toEqual([{ is_nullable: 'NO' }]);
    }));

  it('goes down and back up, keeping the jobs', () =>
    withDb(async (h) => {
      await migrateTo(h.db, '0001_init');
      await seedUnder0001(h.db);
      await migrateToLatest(h.db);
      expect(await at0001(h.db)).toEqual(['0002_queued_at']);
      const cols = await sql<{ n: number }>`select count(*)::int as n from information_schema.columns where table_name = 'jobs' and column_name = 'queued_at'`.execute(h.db);
      expect(cols.rows[0]!.n).toBe(0);
      expect(await migrateTo(h.db, '0002_queued_at')).toEqual(['0002_queued_at']);
      expect(await queuedAt(h.db)).toEqual({ requeued: t(20), waiting: t(5), bare: t(7) });
    }));
});

describe.each(BOTH_DATABASES)('0003_user_disable_token_parent on %s', (_kind, open) => {
  const cols = async (db: Kysely<any>) =>
    (
      await sql<{ c: string }>`select table_name || '.' || column_name as c from information_schema.columns
        where (table_name, column_name) in (('users', 'disabled_at'), ('api_tokens', 'issued_by')) order by 1`.execute(db)
    ).rows.map((r) => r.c);

  it('keeps users and tokens enabled and parentless, and goes down and back up', async () => {
    const d: { handle: DatabaseHandle; drop(): Promise<void> } = await open();
    const db = d.handle.db;
    try {
      await migrateTo(db, '0002_queued_at');
      expect(await cols(db)).toEqual([]);
      const user = (await sql<{ id: string }>`insert into users (name, role) values ('root', 'operator') returning id`.execute(db)).rows[0]!.id;
      await sql`insert into api_tokens (user_id, token_hash) values (${user}, 'h')`.execute(db);
      expect(await migrateTo(db, '0003_user_disable_token_parent')).toEqual(['0003_user_disable_token_parent']);
      expect(await cols(db)).toEqual(['api_tokens.issued_by', 'users.disabled_at']);
      const row = (await sql<{ disabled_at: Date | null; issued_by: string | null }>`select u.disabled_at, t.issued_by from users u join api_tokens t on t.user_id = u.id`.execute(db)).rows;
      expect(row).toEqual([{ disabled_at: null, issued_by: null }]);
      expect(await migrateTo(db, '0002_queued_at')).toEqual(['0003_user_disable_token_parent']);
      expect(await cols(db)).toEqual([]);
      await migrateToLatest(db);
      expect(await cols(db)).toEqual(['api_tokens.issued_by', 'users.disabled_at']);
    } finally {
      await d.drop();
    }
  });
});

describe.each(BOTH_DATABASES)('0017_allocations_node_key on %s', (_kind, open) => {
  const keys = async (db: Kysely<any>) =>
    (await sql<{ conname: string }>`select conname from pg_constraint where conrelid = 'allocations'::regclass and contype = 'f' order by 1`.execute(db)).rows.map((r) => r.conname);

  it('still refuses an allocation on an unknown node and keeps a node holding one; goes down and back up', async () => {
    const d: { handle: DatabaseHandle; drop(): Promise<void> } = await open();
    const db = d.handle.db;
    try {
      expect(await keys(db)).toEqual(['allocations_job_id_fkey', 'allocations_node_id_gpu_index_fkey']);
      const tenant = (await sql<{ id: string }>`insert into tenants (name, display_name) values ('t', 'T') returning id`.execute(db)).rows[0]!.id;
      const user = (await sql<{ id: string }>`insert into users (name, role, tenant_id) values ('u', 'researcher', ${tenant}) returning id`.execute(db)).rows[0]!.id;
      const job = (
        await sql<{ id: string }>`insert into jobs (tenant_id, user_id, name, state, gpus, gpu_type, priority, time_limit_seconds, command, env, submitted_at, queued_at)
          values (${tenant}, ${user}, 'j', 'running', 1, 'h100', 'normal', 60, '["true"]'::jsonb, '{}'::jsonb, now(), now()) returning id`.execute(db)
      ).rows[0]!.id;
      const node = (await sql<{ id: string }>`insert into nodes (name, gpu_type, rack, leaf_switch, agent_token_hash) values ('n', 'h100', 'r', 'l', 'h') returning id`.execute(db)).rows[0]!.id;
      await sql`insert into gpus (node_id, index) values (${node}, 0)`.execute(db);
      const allocate = (nodeId: string) => sql`insert into allocations (job_id, node_id, gpu_index, created_at) values (${job}, ${nodeId}, 0, now())`.execute(db);
      await expect(allocate('00000000-0000-0000-0000-000000000000')).rejects.toThrow(/allocations_node_id_gpu_index_fkey/);
      await allocate(node);
      await expect(sql`delete from nodes where id = ${node}`.execute(db)).rejects.toThrow(/foreign key/);
      expect(await migrateTo(db, '0016_job_waits_unchecked')).toContain('0017_allocations_node_key');
      expect(await keys(db)).toEqual(['allocations_job_id_fkey', 'allocations_node_id_fkey', 'allocations_node_id_gpu_index_fkey']);
      await migrateToLatest(db);
      expect(await keys(db)).toEqual(['allocations_job_id_fkey', 'allocations_node_id_gpu_index_fkey']);
    } finally {
      await d.drop();
    }
  });
});

describe.each(BOTH_DATABASES)('0018_job_waits_reason_hash on %s', (_kind, open) => {
  it('keeps the waits stored before it, their sentence whole and no hash (read in full), and goes down and back up', async () => {
    const d: { handle: DatabaseHandle; drop(): Promise<void> } = await open();
    const db = d.handle.db;
    const hashCol = async () => (await sql<{ n: number }>`select count(*)::int as n from information_schema.columns where table_name = 'job_waits' and column_name = 'reason_hash'`.execute(db)).rows[0]!.n;
    try {
      await migrateTo(db, '0017_allocations_node_key');
      expect(await hashCol()).toBe(0);
      const job = '00000000-0000-4000-8000-000000000001';
      await sql`insert into job_waits (job_id, reason_code, reason) values (${job}, 'over_quota_limit', 'Over quota.')`.execute(db);
      expect(await migrateToLatest(db)).toContain('0018_job_waits_reason_hash');
      expect((await sql`select reason_code, reason, reason_hash from job_waits`.execute(db)).rows).toEqual([{ reason_code: 'over_quota_limit', reason: 'Over quota.', reason_hash: null }]);
      expect(await migrateTo(db, '0017_allocations_node_key')).toEqual(['0019_node_change_indexes', '0018_job_waits_reason_hash']);
      expect(await hashCol()).toBe(0);
      expect((await sql`select reason from job_waits`.execute(db)).rows).toEqual([{ reason: 'Over quota.' }]);
      await migrateToLatest(db);
      expect(await hashCol()).toBe(1);
    } finally {
      await d.drop();
    }
  });
});
