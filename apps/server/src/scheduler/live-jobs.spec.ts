import { IdentityRepository, JobsRepository, NodesRepository, TenantsRepository, waitReasonHash } from '@nuri/db';
import { createTestDatabase, type TestDatabase } from '../../../../libs/db/src/testing';
import fc from 'fast-check';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isFresh, LiveJobs } from './live-jobs';
import type { LivePending } from './snapshot';

const t0 = new Date('2026-01-01T00:00:00Z');

/**
 * The leader's in-memory queue against a real PostgreSQL: after any sequence of writes through
 * the repository (submits, starts, ends, requeues, cancels, stop requests), a refresh that
 * applies only the changes must hold exactly what a full reload reads.
 */
describe('LiveJobs: the incremental queue equals a full reload', () => {
  let tdb: TestDatabase;
  let jobs: JobsRepository;
  let nodeIds: string[];
  let tenantId: string;
  let submit: (gpus: number, priority?: 'low' | 'normal' | 'high') => Promise<string>;

  beforeAll(async () => {
    tdb = await createTestDatabase();
    const db = tdb.handle.db;
    tenantId = await new TenantsRepository(db).create({ name: 'kakao', displayName: 'Kakao', weight: 1, quotas: [{ gpuType: 'h100', guaranteed: 64, limit: 64 }] });
    const userId = await new IdentityRepository(db).createUser({ name: 'bob', tenantId, role: 'researcher' });
    const nodes = new NodesRepository(db);
    nodeIds = [];
    for (const name of ['g1', 'g2', 'g3', 'g4']) {
      const id = await nodes.create({ name, gpuType: 'h100', gpus: 8, rack: 'r1', leafSwitch: 'l1', tokenHash: 'x' });
      await nodes.setState(id, 'up', 'test');
      nodeIds.push(id);
    }
    jobs = new JobsRepository(db);
    let n = 0;
    submit = (gpus, priority = 'normal') =>
      jobs.insert({ tenant_id: tenantId, user_id: userId, name: `j${n++}`, gpus, gpu_type: 'h100', priority, time_limit_seconds: 60, command: ['true'], env: {}, working_dir: null, requeue: true, submitted_at: t0 });
  });
  afterAll(async () => tdb?.drop());

  const byId = <T extends { id: string }>(xs: T[]) => [...xs].sort((a, b) => (a.id < b.id ? -1 : 1));
  // The jobs, not the waits remembered on them (a full reload reads the stored ones; a job
  // changed since is a new object with none, so its wait is written again).
  const withoutWaits = (xs: LivePending[]) => byId(xs).map(({ wait: _w, ...j }) => j);
  const expectSameAsReload = async (live: LiveJobs) => {
    const fresh = new LiveJobs(jobs);
    await fresh.refresh();
    expect(withoutWaits(live.pending())).toEqual(withoutWaits(fresh.pending()));
    expect(byId(live.running())).toEqual(byId(fresh.running()));
    expect(live.countByState().sort((a, b) => (a.state < b.state ? -1 : 1))).toEqual(fresh.countByState().sort((a, b) => (a.state < b.state ? -1 : 1)));
  };

  /** Starts a pending job on the first node with room (one node per job here), as the leader's commit does. */
  const start = async (id: string): Promise<boolean> => {
    const running = await jobs.running();
    const held = new Map<string, Set<number>>();
    for (const r of running) for (const p of r.placement) for (const g of p.gpuIndices) (held.get(p.nodeId) ?? held.set(p.nodeId, new Set()).get(p.nodeId)!).add(g);
    const job = await jobs.find(id);
    if (!job || job.state !== 'pending') return false;
    for (const nodeId of nodeIds) {
      const free = [0, 1, 2, 3, 4, 5, 6, 7].filter((g) => !held.get(nodeId)?.has(g));
      if (free.length >= job.gpus) {
        const r = await jobs.commitStarts([{ jobId: id, gpuModel: 'h100', placement: [{ nodeId, gpuIndices: free.slice(0, job.gpus) }] }], t0);
        return r.started.includes(id);
      }
    }
    return false;
  };

  type Op =
    | { op: 'submit'; gpus: number; priority: 'low' | 'normal' | 'high' }
    | { op: 'start' | 'finish' | 'requeue' | 'cancel' | 'stop' | 'annotate'; pick: number }
    | { op: 'refresh' };
  const opArb: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ op: fc.constant('submit' as const), gpus: fc.constantFrom(1, 2, 4, 8), priority: fc.constantFrom('low' as const, 'normal' as const, 'high' as const) }),
    fc.record({ op: fc.constantFrom('start' as const, 'finish' as const, 'requeue' as const, 'cancel' as const, 'stop' as const, 'annotate' as const), pick: fc.nat(50) }),
    fc.constant({ op: 'refresh' as const }),
  );

  it('after random writes and refreshes (property, real PostgreSQL)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 5, maxLength: 30 }), async (ops) => {
        const live = new LiveJobs(jobs);
        await live.refresh();
        const untouched = new Set(live.pending().map((j) => j.id));
        const submitted: string[] = [];
        const everStarted = new Set<string>();
        for (const o of ops) {
          if (o.op === 'refresh') {
            await live.refresh();
            continue;
          }
          if (o.op === 'submit') {
            submitted.push(await submit(o.gpus, o.priority));
            continue;
          }
          const pool: { id: string }[] = o.op === 'start' || o.op === 'cancel' || o.op === 'annotate' ? await jobs.pending() : await jobs.running();
          const target = pool.length ? byId(pool)[o.pick % pool.length]!.id : undefined;
          if (!target) continue;
          untouched.delete(target);
          if (o.op === 'start') {
            if (await start(target)) everStarted.add(target);
          }
          else if (o.op === 'finish') await jobs.transition(target, ['running'], 'completed', 'exit code 0', t0, { exit_code: 0 });
          else if (o.op === 'requeue') await jobs.transition(target, ['running'], 'pending', 'preempted', t0);
          else if (o.op === 'cancel') await jobs.cancelPending([target], 'cancelled by test', t0);
          else if (o.op === 'stop') await jobs.requestStop(target, 'preempt', t0);
          else await jobs.annotatePending([{ id: target, reason: 'a reason', reasonCode: 'behind_higher_ranked', estimatedStartAt: t0, queuePosition: 3 }]);
        }
        await live.refresh();
        await expectSameAsReload(live);
        // Express starts look only at arrivals and at their tenants' queues.
        const pendingNow = new Set(live.pending().map((j) => j.id));
        const taken = live.takeArrivals();
        // Only a job never started is fresh (a requeued one is left to the full pass).
        for (const j of taken) expect(isFresh(j), `fresh ${j.id}`).toBe(!everStarted.has(j.id) && submitted.includes(j.id));
        const arrivals = new Set(taken.map((j) => j.id));
        for (const id of arrivals) expect(pendingNow.has(id) && !untouched.has(id), `arrival ${id}`).toBe(true);
        for (const id of submitted) if (pendingNow.has(id)) expect(arrivals.has(id), `submitted ${id} still pending`).toBe(true);
        expect(live.takeArrivals()).toEqual([]);
        expect(byId(live.pendingOf([tenantId]))).toEqual(byId(live.pending()));
        expect(live.pendingOf(['00000000-0000-0000-0000-000000000000'])).toEqual([]);
      }),
      { numRuns: 25 },
    );
  });

  it('tells which arrivals have dependencies from their rows, and knows nothing of jobs only a full reload read', async () => {
    const live = new LiveJobs(jobs);
    await live.refresh();
    const before = await submit(1);
    const fresh = new LiveJobs(jobs);
    await fresh.refresh();
    expect(fresh.dependent(before)).toBeUndefined();
    const plain = await submit(1);
    const dependent = await jobs.insert(
      { tenant_id: tenantId, user_id: (await jobs.find(plain))!.user_id, name: 'after', gpus: 1, gpu_type: 'h100', priority: 'normal', time_limit_seconds: 60, command: ['true'], env: {}, working_dir: null, requeue: true, submitted_at: t0 },
      { dependencies: [{ dependsOn: plain, kind: 'afterok' }] },
    );
    await live.refresh();
    expect([live.dependent(plain), live.dependent(dependent)]).toEqual([false, true]);
    for (const id of [before, plain, dependent]) await jobs.transition(id, ['pending'], 'cancelled', 'test', t0);
    await live.refresh();
    expect(live.dependent(dependent)).toBeUndefined();
  });

  it('sees a write whose transaction began before a refresh and committed after it', async () => {
    const live = new LiveJobs(jobs);
    await live.refresh();
    const db = tdb.handle.db;
    // A submit stays open across a refresh (which must not see it yet), then commits.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let opened!: () => void;
    const isOpen = new Promise<void>((r) => (opened = r));
    let slowId = '';
    const slow = db.transaction().execute(async (tx) => {
      const row = await tx
        .insertInto('jobs')
        .values({ tenant_id: (await tx.selectFrom('tenants').select('id').executeTakeFirstOrThrow()).id, user_id: (await tx.selectFrom('users').select('id').executeTakeFirstOrThrow()).id, name: 'slow', state: 'pending', gpus: 1, gpu_type: 'h100', priority: 'normal', time_limit_seconds: 60, command: JSON.stringify(['true']), env: '{}', working_dir: null, requeue: false, submitted_at: t0, queued_at: t0 } as never)
        .returning('id')
        .executeTakeFirstOrThrow();
      slowId = row.id;
      opened();
      await gate;
    });
    await Promise.race([isOpen, slow]);
    const fast = await submit(2);
    await live.refresh();
    expect(live.pending().map((j) => j.id)).toContain(fast);
    expect(live.pending().map((j) => j.id)).not.toContain(slowId);
    release();
    await slow;
    await live.refresh();
    expect(live.pending().map((j) => j.id)).toContain(slowId);
    await expectSameAsReload(live);
  });

  it("does not count the pass's own annotations as changes, and does count any other write", async () => {
    const live = new LiveJobs(jobs);
    await live.refresh();
    const pending = await jobs.pending();
    expect(pending.length).toBeGreaterThan(0);
    const stamps = async () => (await sql<{ id: string; x: string }>`select id, change_xid::text as x from jobs where state = 'pending' order by id`.execute(tdb.handle.db)).rows;
    const before = await stamps();
    await jobs.annotatePending(pending.map((j) => ({ id: j.id, reason: 'waiting', reasonCode: 'waiting_for_resources', estimatedStartAt: null, queuePosition: 1 })));
    // The annotations live in job_waits: no job row was written, so none comes back as a change.
    expect(await stamps()).toEqual(before);
    live.takeTouched();
    await sql`update jobs set priority = 'high' where id = ${pending[0]!.id}`.execute(tdb.handle.db);
    await live.refresh();
    // (Rows written while another transaction on the server was open may come back again: more is harmless.)
    expect(live.takeTouched()).toContain(pending[0]!.id);
    expect(live.pending().find((j) => j.id === pending[0]!.id)?.priorityName).toBe('high');
  });

  it('puts the stored waits on the jobs when it reads them all, none on a job changed since, and the ones a new leader reads back', async () => {
    const [a, b] = [await submit(1), await submit(2)];
    await jobs.annotatePending([{ id: a, reason: 'behind 2 jobs', reasonCode: 'behind_higher_ranked', estimatedStartAt: new Date(t0.getTime() + 60_000), queuePosition: 3 }]);
    const live = new LiveJobs(jobs);
    expect((await live.refresh()).full).toBe(true);
    // The sentence as its hash: what a pass compares (`staleFields`).
    expect(live.get(a)!.wait).toEqual({ code: 'behind_higher_ranked', reason: null, reasonHash: waitReasonHash('behind 2 jobs'), eta: t0.getTime() + 60_000, position: 3 });
    expect(live.get(b)!.wait).toBeUndefined();
    // Changed (its wait may be out of date): a new object, with no wait remembered.
    await sql`update jobs set priority = 'high' where id = ${a}`.execute(tdb.handle.db);
    await live.refresh();
    expect(live.get(a)).toMatchObject({ priorityName: 'high', wait: undefined });
    // A standby taking the lead reads the stored waits back: each job has its own, the others none.
    await jobs.annotatePending([{ id: b, reason: 'over quota', reasonCode: 'over_quota_limit', estimatedStartAt: null, queuePosition: null }]);
    live.setWaits(await jobs.pendingAnnotations());
    expect(live.get(a)!.wait).toMatchObject({ code: 'behind_higher_ranked', position: 3 });
    expect(live.get(b)!.wait).toMatchObject({ code: 'over_quota_limit', reasonHash: waitReasonHash('over quota'), eta: null, position: null });
    live.setWaits([]);
    expect(live.pending().filter((j) => j.wait !== undefined)).toEqual([]);
    await jobs.cancelPending([a, b], 'cancelled by test', t0);
  });

  it('reads rows again while a long transaction holds the horizon back, but applies and touches each write once', async () => {
    const live = new LiveJobs(jobs);
    await live.refresh();
    // Another session's transaction, open with an id: the horizon cannot pass it.
    const { Client } = await import('pg');
    const long = new Client({ connectionString: tdb.url });
    await long.connect();
    try {
      await long.query('begin');
      await long.query('select pg_current_xact_id()');
      live.takeTouched();
      const id = await submit(1);
      expect(await live.refresh()).toMatchObject({ full: false, applied: 1 });
      expect(live.takeTouched()).toEqual([id]);
      // The same row comes back (the horizon is held), but it is the same write.
      const again = await live.refresh();
      expect(again.rows).toBeGreaterThanOrEqual(1);
      expect(again.applied).toBe(0);
      expect(live.takeTouched()).toEqual([]);
      // A new write to it is applied and touched.
      await sql`update jobs set priority = 'low' where id = ${id}`.execute(tdb.handle.db);
      expect((await live.refresh()).applied).toBe(1);
      expect(live.takeTouched()).toEqual([id]);
      expect(live.pending().find((j) => j.id === id)?.priorityName).toBe('low');
    } finally {
      await long.query('rollback');
      await long.end();
    }
    await live.refresh();
    await expectSameAsReload(live);
  });
});
