import { sql } from 'kysely';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DatabaseHandle } from '../database';
import type { NodeIsolationJson } from '../schema';
import { createTestDatabase, DATABASE_KINDS, TestDatabase } from '../testing';
import { IdentityRepository } from './identity.repository';
import { changedFrom } from './changed-from';
import { epochMs } from './epoch-ms';
import { JobsRepository, plainArray } from './jobs.repository';
import { NodesRepository } from './nodes.repository';
import { TenantsRepository } from './tenants.repository';
import { waitReasonHash } from '../wait-reason-hash';

const t0 = new Date('2026-01-01T00:00:00Z');

async function seed(h: DatabaseHandle) {
  const tenants = new TenantsRepository(h.db);
  const ids = new IdentityRepository(h.db);
  const nodes = new NodesRepository(h.db);
  const jobs = new JobsRepository(h.db);
  const tenantId = await tenants.create({ name: 'naver', displayName: 'Naver', weight: 2, quotas: [{ gpuType: 'h100', guaranteed: 8, limit: 16 }] });
  const userId = await ids.createUser({ name: 'alice', tenantId, role: 'researcher' });
  const nodeId = await nodes.create({ name: 'n1', gpuType: 'h100', gpus: 8, rack: 'r1', leafSwitch: 'l1', tokenHash: 'x' });
  await nodes.setState(nodeId, 'up', 'test');
  const job = (name: string, gpus = 2) =>
    jobs.insert({ tenant_id: tenantId, user_id: userId, name, gpus, gpu_type: 'h100', priority: 'normal', time_limit_seconds: 60, command: ['sleep', '1'], env: { A: '1' }, working_dir: null, requeue: true, submitted_at: t0 });
  return { tenants, ids, nodes, jobs, tenantId, userId, nodeId, job };
}

// The same repository contract, against both database kinds users meet.
describe.each(DATABASE_KINDS)('repositories on %s', (_kind, open) => {
  let tdb: TestDatabase;
  let s: Awaited<ReturnType<typeof seed>>;
  beforeAll(async () => {
    tdb = await open();
    s = await seed(tdb.handle);
  });
  afterAll(async () => tdb?.drop());

  it("reads nodes for the scheduler as list() does, GPU indices and health, in one statement; then only what changed, and every node's liveness", async () => {
    const other = await s.nodes.create({ name: 'n0-sick', gpuType: 'h800', gpus: 4, rack: 'r2', leafSwitch: 'l2', tokenHash: 'y' });
    await sql`update gpus set healthy = false, health_reason = 'XID 79' where node_id = ${other} and index = 2`.execute(tdb.handle.db);
    const full = await s.nodes.list();
    const first = await s.nodes.forScheduling();
    const lean = first.changed;
    expect(lean.map((n) => n.name)).toEqual(full.map((n) => n.name));
    for (const [i, n] of lean.entries()) {
      const { gpus, ...rest } = full[i]!;
      expect(n).toEqual({ ...rest, isolation: rest.isolation ?? null, gpus: gpus.map((g) => ({ index: g.index, healthy: g.healthy, uuid: null, model: null, healthReason: '', jobId: null })) });
    }
    expect(lean.find((n) => n.id === other)!.gpus.map((g) => g.healthy)).toEqual([true, true, false, true]);
    // Nothing changed: no node re-read, every node's liveness still there.
    const idle = await s.nodes.forScheduling(first.horizon);
    expect(idle.changed).toEqual([]);
    expect(idle.liveness.map((l) => l.id).sort()).toEqual(full.map((n) => n.id).sort());
    // A heartbeat is liveness only; a GPU's health and a node's state re-read that node.
    const beat = new Date(t0.getTime() + 5000);
    await s.nodes.heartbeatMany([other], beat);
    const afterBeat = await s.nodes.forScheduling(idle.horizon);
    expect(afterBeat.changed).toEqual([]);
    expect(afterBeat.liveness.find((l) => l.id === other)).toEqual({ id: other, heardMs: beat.getTime(), connected: false });
    await sql`update gpus set healthy = true where node_id = ${other} and index = 2`.execute(tdb.handle.db);
    const healed = await s.nodes.forScheduling(afterBeat.horizon);
    expect(healed.changed.map((n) => [n.id, n.gpus.map((g) => g.healthy), n.lastHeartbeatAt])).toEqual([[other, [true, true, true, true], beat]]);
    await s.nodes.setState(other, 'draining', 'test');
    const drained = await s.nodes.forScheduling(healed.horizon);
    expect(drained.changed.map((n) => [n.name, n.state])).toEqual([['n0-sick', 'draining']]);
    await sql`delete from gpus where node_id = ${other}`.execute(tdb.handle.db);
    await sql`delete from nodes where id = ${other}`.execute(tdb.handle.db);
  });

  it('reads a time as epoch milliseconds with the microseconds dropped, whatever the session time zone', async () => {
    const times = ['1999-12-31 23:59:59.999999', '2000-01-01 00:00:00.000500', '2026-11-01 05:59:59.999999', '2026-11-01 06:00:00.000001', '2026-11-01 06:30:00.123456', '2095-06-30 12:00:00.999000'];
    for (const zone of ['UTC', 'America/New_York']) {
      const got = await tdb.handle.db.transaction().execute(async (tx) => {
        await sql`select set_config('timezone', ${zone}, true)`.execute(tx);
        return (await sql<{ ms: number }>`select ${epochMs(sql.ref('t'))} as ms from unnest(${times.map((t) => `${t}+00`)}::timestamptz[]) with ordinality as x(t, k) order by k`.execute(tx)).rows.map((r) => r.ms);
      });
      expect(got).toEqual(times.map((t) => Date.parse(`${t.slice(0, 23).replace(' ', 'T')}Z`)));
    }
  });

  it('round-trips a job with its argv, env and first transition', async () => {
    const id = await s.job('roundtrip');
    const d = await s.jobs.detail(id);
    expect(d).toMatchObject({ name: 'roundtrip', state: 'pending', command: ['sleep', '1'], env: { A: '1' }, tenantName: 'naver', userName: 'alice' });
    expect(d!.transitions).toEqual([{ at: t0, from: null, to: 'pending', reason: 'submitted' }]);
  });

  it('answers grouped submissions with each job as a later read shows it, though it reads back only what the database set', async () => {
    const at = new Date('2026-01-01T00:00:01.234Z');
    const base = { tenant_id: s.tenantId, user_id: s.userId, gpus: 4, gpu_type: 'h800' as const, priority: 'high' as const, time_limit_seconds: 90, working_dir: '/scratch', requeue: false, submitted_at: at };
    const answers = await s.jobs.insertPlainMany([
      { job: { ...base, name: 'grouped-a', command: ['python', 'train.py'], env: { Z: 'last', A: 'first' } }, names: { tenantName: 'naver', userName: 'alice' } },
      { job: { ...base, name: 'grouped-b', command: [], env: {}, script: '#!/bin/sh\necho hi\n' }, names: { tenantName: 'naver', userName: 'alice' } },
    ]);
    expect(answers.map((a) => a.name)).toEqual(['grouped-a', 'grouped-b']);
    for (const a of answers) {
      expect(a).toEqual(await s.jobs.detail(a.id));
      await s.jobs.transition(a.id, ['pending'], 'cancelled', 'test', t0);
    }
  });

  it('commits a start, refuses a second start on the same GPUs, and releases GPUs on exit', async () => {
    const a = await s.job('a');
    const b = await s.job('b');
    const at = new Date(t0.getTime() + 1000);
    const r1 = await s.jobs.commitStarts([{ jobId: a, gpuModel: 'h100', placement: [{ nodeId: s.nodeId, gpuIndices: [0, 1] }] }], at);
    expect(r1.started).toEqual([a]);
    const r2 = await s.jobs.commitStarts([{ jobId: b, gpuModel: 'h100', placement: [{ nodeId: s.nodeId, gpuIndices: [1, 2] }] }], at);
    expect(r2).toEqual({ started: [], skipped: [{ jobId: b, why: 'GPU already allocated' }] });
    expect((await s.jobs.detail(a))!.placement).toEqual([{ node: 'n1', gpus: [0, 1] }]);
    expect(await s.jobs.transition(a, ['running'], 'completed', 'exit code 0', at, { exit_code: 0 })).toBe(true);
    expect(await s.jobs.transition(a, ['running'], 'failed', 'late', at)).toBe(false);
    const r3 = await s.jobs.commitStarts([{ jobId: b, gpuModel: 'h100', placement: [{ nodeId: s.nodeId, gpuIndices: [1, 2] }] }], at);
    expect(r3.started).toEqual([b]);
    expect((await s.jobs.detail(a))!).toMatchObject({ state: 'completed', exit_code: 0, placement: [{ node: 'n1', gpus: [0, 1] }] });
    await s.jobs.transition(b, ['running'], 'cancelled', 'test', at);
  });

  it('says which jobs were written since a horizon, each with the nodes of its live GPUs (none once it ended), and from where to read next', async () => {
    const h0 = await s.jobs.changeHorizon();
    const job = await s.job('changed-placements', 2);
    // A submission is no agent's business until it starts.
    expect((await s.jobs.changedPlacementsSince(h0)).jobs.map((j) => j.id)).not.toContain(job);
    const at = new Date(t0.getTime() + 1500);
    expect((await s.jobs.commitStarts([{ jobId: job, gpuModel: 'h100', placement: [{ nodeId: s.nodeId, gpuIndices: [6, 7] }] }], at)).started).toEqual([job]);
    const first = await s.jobs.changedPlacementsSince(h0);
    expect(first.jobs.find((j) => j.id === job)).toEqual({ id: job, nodeIds: [s.nodeId] });
    expect(first.horizon).not.toBeNull();
    // Nothing written since: no job, no new horizon.
    const h1 = first.horizon!;
    expect((await s.jobs.changedPlacementsSince(h1)).jobs.map((j) => j.id)).not.toContain(job);
    await s.jobs.transition(job, ['running'], 'cancelled', 'test', at);
    const later = await s.jobs.changedPlacementsSince(h1);
    expect(later.jobs.find((j) => j.id === job)).toEqual({ id: job, nodeIds: [] });
  });

  it('refuses each start that fails a check, saying which, and commits the others with it', async () => {
    const node = async (name: string, gpuType: 'h100' | 'h800', state: 'up' | 'draining', heard: Date) => {
      const id = await s.nodes.create({ name, gpuType, gpus: 4, rack: 'r9', leafSwitch: 'l9', tokenHash: name });
      await s.nodes.setState(id, state, 'test');
      await sql`update nodes set last_heartbeat_at = ${heard} where id = ${id}`.execute(tdb.handle.db);
      return id;
    };
    const heardSince = new Date(t0.getTime() + 60_000);
    const good = await node('chk-good', 'h100', 'up', heardSince); // heard exactly at the limit: not silent
    const draining = await node('chk-draining', 'h100', 'draining', heardSince);
    const h800 = await node('chk-h800', 'h800', 'up', heardSince);
    const silent = await node('chk-silent', 'h100', 'up', new Date(heardSince.getTime() - 1));
    await sql`update gpus set healthy = false where node_id = ${good} and index = 3`.execute(tdb.handle.db);
    const ids = { cancelled: await s.job('chk-cancelled', 1), short: await s.job('chk-short', 2), draining: await s.job('chk-draining', 1), type: await s.job('chk-type', 1), silent: await s.job('chk-silent', 1), sick: await s.job('chk-sick', 1), ok: await s.job('chk-ok', 2) };
    await s.jobs.transition(ids.cancelled, ['pending'], 'cancelled', 'test', t0);
    const on = (jobId: string, nodeId: string, gpuIndices: number[]) => ({ jobId, gpuModel: 'h100' as const, placement: [{ nodeId, gpuIndices }] });
    const at = new Date(heardSince.getTime() + 1000);
    const r = await s.jobs.commitStarts(
      [on(ids.cancelled, good, [2]), on(ids.short, good, [2]), on(ids.draining, draining, [0]), on(ids.type, h800, [0]), on(ids.silent, silent, [0]), on(ids.sick, good, [3]), on(ids.ok, good, [0, 1])],
      at,
      heardSince,
    );
    expect(r).toEqual({
      started: [ids.ok],
      skipped: [
        { jobId: ids.cancelled, why: 'job is no longer pending' },
        { jobId: ids.short, why: 'placement does not match the GPU count' },
        { jobId: ids.draining, why: 'node not up or of another type' },
        { jobId: ids.type, why: 'node not up or of another type' },
        { jobId: ids.silent, why: 'node agent silent' },
        { jobId: ids.sick, why: 'GPU unhealthy' },
      ],
    });
    expect((await s.jobs.detail(ids.ok))!).toMatchObject({ state: 'running', placement: [{ node: 'chk-good', gpus: [0, 1] }] });
    for (const id of [ids.short, ids.draining, ids.type, ids.silent, ids.sick]) expect((await s.jobs.detail(id))!.state).toBe('pending');
    for (const id of Object.values(ids)) await s.jobs.transition(id, ['pending', 'running'], 'cancelled', 'test', at);
  });

  it('hands the starts that passed the checks to the work done while they are written, before they are committed; none passed, no call', async () => {
    const nodeId = await s.nodes.create({ name: 'ww-node', gpuType: 'h100', gpus: 2, rack: 'r9', leafSwitch: 'l9', tokenHash: 'ww' });
    await s.nodes.setState(nodeId, 'up', 'test');
    const [ok, gone] = [await s.job('ww-ok', 1), await s.job('ww-gone', 1)];
    await s.jobs.transition(gone, ['pending'], 'cancelled', 'test', t0);
    const on = (jobId: string, index: number) => ({ jobId, gpuModel: 'h100' as const, placement: [{ nodeId, gpuIndices: [index] }] });
    const at = new Date(t0.getTime() + 3000);
    const calls: string[][] = [];
    // On PostgreSQL another connection still sees the job pending then (PGlite has one connection).
    // The write waits for a GPU row another session holds (its key check) until that read is
    // done: a read racing the commit came too late once, on a loaded machine.
    let seenMeanwhile: Promise<string | undefined> | undefined;
    const blocker = tdb.handle.kind === 'postgres' ? new Client({ connectionString: tdb.url }) : undefined;
    if (blocker) {
      await blocker.connect();
      await blocker.query('begin');
      await blocker.query('select 1 from gpus where node_id = $1 and index = 1 for update', [nodeId]);
    }
    const r = await s.jobs.commitStarts([on(gone, 0), on(ok, 1)], at, undefined, undefined, (ids) => {
      calls.push([...ids]);
      if (blocker) seenMeanwhile = s.jobs.detail(ok).then((d) => d?.state).finally(() => blocker.query('commit').then(() => blocker.end()));
    });
    expect(r.started).toEqual([ok]);
    expect(calls).toEqual([[ok]]);
    if (tdb.handle.kind === 'postgres') expect(await seenMeanwhile).toBe('pending');
    expect((await s.jobs.detail(ok))!.state).toBe('running');
    await s.jobs.commitStarts([on(gone, 0)], at, undefined, undefined, (ids) => calls.push([...ids]));
    expect(calls).toEqual([[ok]]);
    await s.jobs.transition(ok, ['running'], 'cancelled', 'test', at);
  });

  it('writes array values that need no quoting as they are, and refuses one that would', () => {
    expect(plainArray(['0b0e9d3e-1c7a-4d55-9a59-3f1f0c1f2a10', null, 7, true, 'waiting_for_resources', '2026-01-01T00:00:01.234Z'])).toBe(
      '{0b0e9d3e-1c7a-4d55-9a59-3f1f0c1f2a10,NULL,7,true,waiting_for_resources,2026-01-01T00:00:01.234Z}',
    );
    expect(plainArray([])).toBe('{}');
    expect(plainArray([-3, 1.5, false, 'nulls', 'nul'])).toBe('{-3,1.5,false,nulls,nul}');
    for (const bad of ['a,b', 'a b', '{x}', 'say "hi"', 'back\\slash', '', 'null', 'NULL', 'Null']) expect(() => plainArray([bad])).toThrow(/needs quoting/);
  });

  it('commits many starts in one call: each verified against the ones before it, written together', async () => {
    const [a, b, c] = [await s.job('many-a'), await s.job('many-b'), await s.job('many-c', 1)];
    const at = new Date(t0.getTime() + 2000);
    const r = await s.jobs.commitStarts(
      [
        { jobId: a, gpuModel: 'h100', placement: [{ nodeId: s.nodeId, gpuIndices: [3, 4] }] },
        { jobId: b, gpuModel: 'h100', placement: [{ nodeId: s.nodeId, gpuIndices: [4, 5] }] },
        { jobId: c, gpuModel: 'h100', placement: [{ nodeId: s.nodeId, gpuIndices: [6] }] },
      ],
      at,
    );
    expect(r).toEqual({ started: [a, c], skipped: [{ jobId: b, why: 'GPU already allocated' }] });
    const [da, db, dc] = [(await s.jobs.detail(a))!, (await s.jobs.detail(b))!, (await s.jobs.detail(c))!];
    expect(da).toMatchObject({ state: 'running', started_at: at, gpu_model: 'h100', attempts: 1, placement: [{ node: 'n1', gpus: [3, 4] }] });
    expect(dc).toMatchObject({ state: 'running', attempts: 1, placement: [{ node: 'n1', gpus: [6] }] });
    expect(db).toMatchObject({ state: 'pending', attempts: 0 });
    expect(da.transitions.at(-1)).toEqual({ at, from: 'pending', to: 'running', reason: 'placed on 1 node(s)' });
    // Two jobs with rank 0 on one node never share a MASTER_PORT.
    expect(da.master_port).not.toBe(dc.master_port);
    for (const id of [a, c]) await s.jobs.transition(id, ['running'], 'completed', 'done', at);
    await s.jobs.transition(b, ['pending'], 'cancelled', 'test', at);
  });

  it('writes nothing of a commit the unique live-allocation index refuses, the other starts in it included', async () => {
    const [ok, bad] = [await s.job('all-or-nothing-ok', 1), await s.job('all-or-nothing-bad')];
    const at = new Date(t0.getTime() + 3000);
    // The same GPU twice in one placement passes the in-memory checks; the index refuses it.
    await expect(
      s.jobs.commitStarts(
        [
          { jobId: ok, gpuModel: 'h100', placement: [{ nodeId: s.nodeId, gpuIndices: [0] }] },
          { jobId: bad, gpuModel: 'h100', placement: [{ nodeId: s.nodeId, gpuIndices: [5, 5] }] },
        ],
        at,
      ),
    ).rejects.toThrow(/allocations_one_live_per_gpu|duplicate key/);
    for (const id of [ok, bad]) {
      const d = (await s.jobs.detail(id))!;
      expect(d).toMatchObject({ state: 'pending', attempts: 0, placement: [] });
      expect(d.transitions).toHaveLength(1);
    }
    for (const id of [ok, bad]) await s.jobs.transition(id, ['pending'], 'cancelled', 'test', at);
  });

  it('reads pending jobs\' times as every other read does, microseconds dropped (pending() reads them as epoch milliseconds)', async () => {
    const id = await s.job('micro', 1);
    await sql`update jobs set submitted_at = '2026-01-01T00:00:00.123999Z', queued_at = '1999-12-31T23:59:59.999999Z' where id = ${id}`.execute(tdb.handle.db);
    const found = (await s.jobs.find(id))!;
    expect(found.queued_at).toEqual(new Date('1999-12-31T23:59:59.999Z'));
    expect((await s.jobs.pending()).find((j) => j.id === id)).toMatchObject({ submitted_ms: found.submitted_at.getTime(), queued_ms: found.queued_at.getTime() });
    expect((await s.jobs.changedSince('0')).rows.find((j) => j.id === id)).toMatchObject({ submitted_ms: found.submitted_at.getTime(), queued_ms: found.queued_at.getTime() });
    await s.jobs.transition(id, ['pending'], 'cancelled', 'test', t0);
  });

  it('reads each pending job with the wait stored for it, in the same statement; a job without one, or no longer pending, has none', async () => {
    const [waited, bare, gone] = [await s.job('waited', 1), await s.job('bare', 1), await s.job('gone', 1)];
    const eta = new Date('2026-01-02T03:04:05.678Z');
    await s.jobs.annotatePending([
      { id: waited, reason: 'behind 3 jobs', reasonCode: 'behind_higher_ranked', estimatedStartAt: eta, queuePosition: 4 },
      { id: gone, reason: 'over quota', reasonCode: 'over_quota_limit', estimatedStartAt: null, queuePosition: null },
    ]);
    await s.jobs.transition(gone, ['pending'], 'cancelled', 'test', t0);
    const byId = new Map((await s.jobs.pending()).map((j) => [j.id, j]));
    expect(await s.jobs.countPending()).toBe(byId.size);
    // The sentence comes back as its hash (the leader compares that), not as its text.
    const hashed = { wait_code: 'behind_higher_ranked', wait_reason: null, wait_reason_hash: waitReasonHash('behind 3 jobs'), wait_position: 4, wait_eta_ms: eta.getTime() };
    expect(byId.get(waited)).toMatchObject(hashed);
    expect(byId.get(bare)).toMatchObject({ wait_code: null, wait_reason: null, wait_reason_hash: null, wait_position: null, wait_eta_ms: null });
    expect(byId.has(gone)).toBe(false);
    // The same waits on their own (a leader that kept the jobs current reads only these).
    const stored = await s.jobs.pendingAnnotations();
    expect(stored.find((w) => w.id === waited)).toEqual({ id: waited, ...hashed });
    expect(stored.some((w) => w.id === bare || w.id === gone)).toBe(false);
    // The API still shows the sentence itself.
    expect((await s.jobs.find(waited))!.wait).toMatchObject({ reasonCode: 'behind_higher_ranked', reason: 'behind 3 jobs', queuePosition: 4 });
    // A row stored without a hash (before migration 0018) is read with its sentence.
    await sql`update job_waits set reason_hash = null where job_id = ${waited}`.execute(tdb.handle.db);
    const old = { wait_code: 'behind_higher_ranked', wait_reason: 'behind 3 jobs', wait_reason_hash: null };
    expect((await s.jobs.pending()).find((j) => j.id === waited)).toMatchObject(old);
    expect((await s.jobs.pendingAnnotations()).find((w) => w.id === waited)).toMatchObject(old);
    for (const id of [waited, bare]) await s.jobs.transition(id, ['pending'], 'cancelled', 'test', t0);
  });

  it('stores each sentence with a hash that reads back exactly, whatever the sentence (non-ASCII, long, one character apart)', async () => {
    const sentences = ['', 'behind 3 jobs', 'behind 4 jobs', '큐에서 대기 중: 3개 작업 뒤 — H100 8장 필요', 'x'.repeat(5000), "quotes ' \" and {braces}, commas"];
    const ids: string[] = [];
    for (const _ of sentences) ids.push(await s.job('hashed', 1));
    await s.jobs.annotatePending(sentences.map((reason, i) => ({ id: ids[i]!, reason, reasonCode: 'waiting_for_resources', estimatedStartAt: null, queuePosition: i })));
    const byId = new Map((await s.jobs.pending()).map((j) => [j.id, j]));
    const read = sentences.map((_, i) => byId.get(ids[i]!)!.wait_reason_hash);
    expect(read).toEqual(sentences.map(waitReasonHash));
    expect(new Set(read).size).toBe(sentences.length);
    for (const id of ids) await s.jobs.transition(id, ['pending'], 'cancelled', 'test', t0);
  });

  it('reads running jobs by node and by id with their whole live placement, in node-name order; never a released GPU or an ended job', async () => {
    const [a, b] = [
      await s.nodes.create({ name: `run-a-${_kind}`, gpuType: 'h100', gpus: 8, rack: 'r1', leafSwitch: 'l1', tokenHash: 'ra' }),
      await s.nodes.create({ name: `run-b-${_kind}`, gpuType: 'h100', gpus: 8, rack: 'r1', leafSwitch: 'l1', tokenHash: 'rb' }),
    ];
    for (const n of [a, b]) await s.nodes.setState(n, 'up', 'test');
    const [multi, single, ended] = [await s.job('multi', 16), await s.job('single', 2), await s.job('ended', 1)];
    const all8 = [0, 1, 2, 3, 4, 5, 6, 7];
    const r = await s.jobs.commitStarts(
      [
        { jobId: multi, gpuModel: 'h100', placement: [{ nodeId: b, gpuIndices: all8 }, { nodeId: a, gpuIndices: all8 }] },
        { jobId: single, gpuModel: 'h100', placement: [{ nodeId: s.nodeId, gpuIndices: [5, 3] }] },
        { jobId: ended, gpuModel: 'h100', placement: [{ nodeId: s.nodeId, gpuIndices: [0] }] },
      ],
      t0,
    );
    expect(r.started.sort()).toEqual([multi, single, ended].sort());
    await s.jobs.transition(ended, ['running'], 'completed', 'done', t0);
    const placement = (jobs: { id: string; placement: { nodeName: string; gpuIndices: number[] }[] }[]) =>
      Object.fromEntries(jobs.map((j) => [j.id, j.placement.map((p) => `${p.nodeName}:${p.gpuIndices.join(',')}`)]));
    const whole = { [multi]: [`run-a-${_kind}:0,1,2,3,4,5,6,7`, `run-b-${_kind}:0,1,2,3,4,5,6,7`] };
    expect(placement(await s.jobs.running({ onNode: b }))).toEqual(whole);
    expect(placement(await s.jobs.running({ onNodes: [a, b] }))).toEqual(whole);
    expect(placement(await s.jobs.running({ onNode: s.nodeId }))[single]).toEqual(['n1:3,5']);
    expect(placement(await s.jobs.running({ onNode: s.nodeId }))[ended]).toBeUndefined();
    expect(placement(await s.jobs.running({ ids: [multi, ended] }))).toEqual(whole);
    expect(await s.jobs.running({ ids: [] })).toEqual([]);
    expect(await s.jobs.running({ onNodes: [] })).toEqual([]);
    const everything = placement(await s.jobs.running());
    expect(everything[multi]).toEqual(whole[multi]);
    expect(everything[single]).toEqual(['n1:3,5']);
    expect(everything[ended]).toBeUndefined();
    // The gateway's lighter read selects the same jobs and GPUs (by node id, in no order), with attempt and stop request.
    const names = new Map([[a, `run-a-${_kind}`], [b, `run-b-${_kind}`], [s.nodeId, 'n1']]);
    const placed = (jobs: { id: string; attempts: number; stopRequested: string | null; placement: { nodeId: string; gpuIndices: number[] }[] }[]) =>
      Object.fromEntries(jobs.map((j) => [j.id, j.placement.map((p) => `${names.get(p.nodeId)}:${p.gpuIndices.join(',')}`).sort()]));
    expect(placed(await s.jobs.placements({ onNode: b }))).toEqual(whole);
    expect(placed(await s.jobs.placements({ onNodes: [a, b] }))).toEqual(whole);
    expect(placed(await s.jobs.placements({ ids: [multi, ended] }))).toEqual(whole);
    expect(await s.jobs.placements({ onNodes: [] })).toEqual([]);
    const all = await s.jobs.placements();
    expect(placed(all)[single]).toEqual(['n1:3,5']);
    expect(placed(all)[ended]).toBeUndefined();
    expect(all.find((j) => j.id === multi)).toMatchObject({ attempts: 1, stopRequested: null });
    await s.jobs.requestStop(multi, 'cancel', t0);
    expect((await s.jobs.placements({ ids: [multi] }))[0]).toMatchObject({ stopRequested: 'cancel' });
    for (const id of [multi, single]) await s.jobs.transition(id, ['running'], 'completed', 'done', t0);
  });

  it("reads many nodes' fresh job states at once: each node's own view of a gang (on it or not, its rank exited or not), in rank order", async () => {
    const [a, b] = [
      await s.nodes.create({ name: `fresh-a-${_kind}`, gpuType: 'h100', gpus: 8, rack: 'r1', leafSwitch: 'l1', tokenHash: 'fa' }),
      await s.nodes.create({ name: `fresh-b-${_kind}`, gpuType: 'h100', gpus: 8, rack: 'r1', leafSwitch: 'l1', tokenHash: 'fb' }),
    ];
    for (const n of [a, b]) await s.nodes.setState(n, 'up', 'test');
    await s.nodes.setAddress(a, '10.0.0.1');
    const [gang, single, pending] = [await s.job('fresh-gang', 16), await s.job('fresh-single', 1), await s.job('fresh-pending', 1)];
    const all8 = [0, 1, 2, 3, 4, 5, 6, 7];
    const r = await s.jobs.commitStarts(
      [
        { jobId: gang, gpuModel: 'h100', placement: [{ nodeId: b, gpuIndices: all8 }, { nodeId: a, gpuIndices: all8 }] },
        { jobId: single, gpuModel: 'h100', placement: [{ nodeId: s.nodeId, gpuIndices: [6] }] },
      ],
      t0,
    );
    expect(r.started.sort()).toEqual([gang, single].sort());
    const attempt = (await s.jobs.find(gang))!.attempts;
    // Node a's rank of this attempt exited; node b's exit is of an earlier attempt.
    await sql`insert into job_rank_exits (job_id, attempt, node_id, rank, exit_code, cause, at)
      values (${gang}, ${attempt}, ${a}, 0, 0, 'exited', ${t0}), (${gang}, ${attempt - 1}, ${b}, 1, 1, 'exited', ${t0})`.execute(tdb.handle.db);
    const unknown = '00000000-0000-4000-8000-000000000000';
    const [onA, onB, onN1] = await s.jobs.liveStateMany([
      { nodeId: a, ids: [gang, single, 'not-a-uuid', unknown] },
      { nodeId: b, ids: [gang] },
      { nodeId: s.nodeId, ids: [single, gang, pending] },
    ]);
    const view = (m: Map<string, { state: string; onNode: boolean; rankExited: boolean; rankNodes: { name: string; address: string | null }[] }>) =>
      Object.fromEntries([...m].map(([id, j]) => [id, `${j.state} on=${j.onNode} exited=${j.rankExited} ranks=${j.rankNodes.map((n) => n.name + (n.address ? `@${n.address}` : '')).join(',')}`]));
    const ranks = `fresh-a-${_kind}@10.0.0.1,fresh-b-${_kind}`;
    expect(view(onA!)).toEqual({ [gang]: `running on=true exited=true ranks=${ranks}`, [single]: 'running on=false exited=false ranks=n1' });
    expect(view(onB!)).toEqual({ [gang]: `running on=true exited=false ranks=${ranks}` });
    expect(view(onN1!)).toEqual({ [single]: 'running on=true exited=false ranks=n1', [gang]: `running on=false exited=false ranks=${ranks}`, [pending]: 'pending on=false exited=false ranks=' });
    expect(await s.jobs.liveStateMany([{ nodeId: a, ids: ['garbage'] }])).toEqual([new Map()]);
    for (const id of [gang, single]) await s.jobs.transition(id, ['running'], 'completed', 'done', t0);
  });

  it('records when a job last entered the queue: its submission, then its requeue', async () => {
    const id = await s.job('requeue', 1);
    expect((await s.jobs.find(id))!.queued_at).toEqual(t0);
    const started = new Date(t0.getTime() + 5000);
    await s.jobs.commitStarts([{ jobId: id, gpuModel: 'h100', placement: [{ nodeId: s.nodeId, gpuIndices: [7] }] }], started);
    expect((await s.jobs.running()).find((r) => r.id === id)).toMatchObject({ submittedAt: t0, queuedAt: t0, startedAt: started });
    // Preempted: back in the queue from now, still submitted when it was.
    const requeued = new Date(t0.getTime() + 9000);
    expect(await s.jobs.transition(id, ['running'], 'pending', 'preempted', requeued)).toBe(true);
    expect((await s.jobs.pending()).find((j) => j.id === id)).toMatchObject({ submitted_ms: t0.getTime(), queued_ms: requeued.getTime() });
    const restarted = new Date(t0.getTime() + 12000);
    await s.jobs.commitStarts([{ jobId: id, gpuModel: 'h100', placement: [{ nodeId: s.nodeId, gpuIndices: [7] }] }], restarted);
    expect((await s.jobs.running()).find((r) => r.id === id)).toMatchObject({ submittedAt: t0, queuedAt: requeued, startedAt: restarted });
    await s.jobs.transition(id, ['running'], 'completed', 'done', restarted);
    // Leaving the queue for good does not move it.
    expect((await s.jobs.find(id))!.queued_at).toEqual(requeued);
  });

  it('paginates newest first without repeats', async () => {
    const all = await s.jobs.list({ tenantId: s.tenantId, limit: 100 });
    const first = await s.jobs.list({ tenantId: s.tenantId, limit: 2 });
    const last = first[first.length - 1]!;
    const rest = await s.jobs.list({ tenantId: s.tenantId, limit: 100, after: { submittedAt: last.submitted_at, id: last.id } });
    expect([...first, ...rest].map((j) => j.id)).toEqual(all.map((j) => j.id));
  });

  it('finds a principal only by an unexpired, unrevoked token hash', async () => {
    const tok = await s.ids.createToken({ userId: s.userId, hash: `h-${_kind}`, description: '', expiresAt: new Date(t0.getTime() + 1000) });
    expect(await s.ids.principalByTokenHash(`h-${_kind}`, t0)).toMatchObject({ userName: 'alice', tenantName: 'naver', role: 'researcher' });
    expect(await s.ids.principalByTokenHash(`h-${_kind}`, new Date(t0.getTime() + 2000))).toBeUndefined();
    await s.ids.revokeToken(tok.id, null, t0);
    expect(await s.ids.principalByTokenHash(`h-${_kind}`, t0)).toBeUndefined();
  });

  it('refuses every token of a disabled user until they are enabled again', async () => {
    const u = await s.ids.createUser({ name: `dis-${_kind}`, tenantId: s.tenantId, role: 'researcher' });
    await s.ids.createToken({ userId: u, hash: `d1-${_kind}`, description: '', expiresAt: null });
    await s.ids.createToken({ userId: u, hash: `d2-${_kind}`, description: '', expiresAt: null });
    expect(await s.ids.authenticateHash(`d1-${_kind}`, t0)).toMatchObject({ principal: { userName: `dis-${_kind}`, tokenExpiresAt: null } });
    await s.ids.setUserDisabled(u, t0);
    await s.ids.setUserDisabled(u, new Date(t0.getTime() + 5000)); // disabling again keeps the first time
    expect((await s.ids.findUserById(u))!.disabledAt).toEqual(t0);
    for (const h of [`d1-${_kind}`, `d2-${_kind}`]) expect(await s.ids.authenticateHash(h, t0)).toEqual({ refused: 'user_disabled' });
    expect(await s.ids.authenticateHash(`nope-${_kind}`, t0)).toEqual({ refused: 'invalid' });
    await s.ids.setUserDisabled(u, null);
    expect(await s.ids.principalByTokenHash(`d2-${_kind}`, t0)).toMatchObject({ userName: `dis-${_kind}` });
  });

  it('revokes a token with every live token created from it, transitively, and nothing else', async () => {
    const mk = async (name: string, issuedBy: string | null) =>
      (await s.ids.createToken({ userId: s.userId, hash: `${name}-${_kind}`, description: name, expiresAt: null, issuedBy })).id;
    const root = await mk('root', null);
    const child = await mk('child', root);
    const grandchild = await mk('grandchild', child);
    const sibling = await mk('sibling', null);
    const other = await mk('other', sibling);
    expect(await s.ids.revokeTokenTree(child, false, t0)).toEqual([child]);
    // Without cascade the grandchild lives on, and a second plain revoke of the child is a no-op.
    expect(await s.ids.revokeTokenTree(child, false, t0)).toEqual([]);
    expect(await s.ids.principalByTokenHash(`grandchild-${_kind}`, t0)).toBeDefined();
    const gc2 = await mk('gc2', grandchild);
    // The child was revoked on its own first: the walk still goes through it to what lies below.
    const revoked = await s.ids.revokeTokenTree(root, true, t0);
    expect(revoked[0]).toBe(root);
    expect(revoked.slice(1).sort()).toEqual([grandchild, gc2].sort());
    // Nothing left: a repeat revokes nothing.
    expect(await s.ids.revokeTokenTree(root, true, t0)).toEqual([]);
    for (const n of ['root', 'child', 'grandchild', 'gc2']) expect(await s.ids.principalByTokenHash(`${n}-${_kind}`, t0)).toBeUndefined();
    for (const n of ['sibling', 'other']) expect(await s.ids.principalByTokenHash(`${n}-${_kind}`, t0)).toBeDefined();
    expect(other).toBeTruthy();
  });

  it("reads many nodes' agent token hashes by name in one statement; an unknown name has none", async () => {
    const other = await s.nodes.create({ name: `tok-${_kind}`, gpuType: 'h800', gpus: 8, rack: 'r1', leafSwitch: 'l1', tokenHash: 'hash-of-tok' });
    const got = await s.nodes.tokenHashMany(['n1', `tok-${_kind}`, 'no-such-node']);
    expect(Object.fromEntries(got)).toEqual({ n1: { id: s.nodeId, hash: 'x' }, [`tok-${_kind}`]: { id: other, hash: 'hash-of-tok' } });
    expect(await s.nodes.tokenHash('no-such-node')).toBeUndefined();
    expect((await s.nodes.tokenHashMany([])).size).toBe(0);
  });

  it('applies an agent stream sequence number once', async () => {
    expect(await s.nodes.advanceStream(s.nodeId, 's1', 0, t0)).toBe(true);
    expect(await s.nodes.advanceStream(s.nodeId, 's1', 0, t0)).toBe(false);
    expect(await s.nodes.advanceStream(s.nodeId, 's1', 1, t0)).toBe(true);
    expect(await s.nodes.streamSeq(s.nodeId, 's1')).toBe(1);
  });

  it("advances many nodes' streams in one statement, each only forward", async () => {
    const otherNode = await s.nodes.create({ name: `streams-node-${_kind}`, gpuType: 'h100', gpus: 8, rack: 'r1', leafSwitch: 'l1', tokenHash: 'y' });
    await s.nodes.advanceStream(s.nodeId, 'm1', 5, t0);
    const got = await s.nodes.advanceStreamMany(
      [
        { nodeId: s.nodeId, stream: 'm1', seq: 4 }, // behind what is stored
        { nodeId: s.nodeId, stream: 'm2', seq: 1 }, // new
        { nodeId: otherNode, stream: 'm1', seq: 7 }, // same stream name, another node
      ],
      t0,
    );
    expect(got).toEqual([false, true, true]);
    expect([await s.nodes.streamSeq(s.nodeId, 'm1'), await s.nodes.streamSeq(s.nodeId, 'm2'), await s.nodes.streamSeq(otherNode, 'm1')]).toEqual([5, 1, 7]);
    expect(await s.nodes.advanceStreamMany([{ nodeId: s.nodeId, stream: 'm1', seq: 6 }, { nodeId: otherNode, stream: 'm1', seq: 7 }], t0)).toEqual([true, false]);
    expect(await s.nodes.advanceStreamMany([], t0)).toEqual([]);
  });

  it("forgets a node's old agent streams (one per agent restart) but keeps the current and recent ones", async () => {
    const hour = 3600_000;
    for (const [stream, ago] of [['old-1', 3], ['old-2', 2], ['recent', 0.01], ['now', 0]] as const)
      await s.nodes.advanceStream(s.nodeId, `prune-${stream}`, 5, new Date(t0.getTime() - ago * hour));
    const hello = await s.nodes.helloMany([{ id: s.nodeId, isolation: null, outputDir: null, stream: 'prune-now' }], t0, 'gw-1', new Date(t0.getTime() - hour));
    expect(hello.pruned.get(s.nodeId)).toBeGreaterThanOrEqual(2);
    expect(hello.seqs.get(s.nodeId)).toBe(5);
    expect(await s.nodes.streamSeq(s.nodeId, 'prune-old-1')).toBe(-1);
    expect(await s.nodes.streamSeq(s.nodeId, 'prune-old-2')).toBe(-1);
    expect(await s.nodes.streamSeq(s.nodeId, 'prune-recent')).toBe(5);
    expect(await s.nodes.streamSeq(s.nodeId, 'prune-now')).toBe(5);
  });

  it("applies agents' hellos in one statement: up only from down, what each reported, the address kept when it says none", async () => {
    const n = await s.nodes.create({ name: `hello-node-${_kind}`, gpuType: 'h100', gpus: 8, rack: 'r1', leafSwitch: 'l1', tokenHash: 'z' });
    const m = await s.nodes.create({ name: `hello-other-${_kind}`, gpuType: 'h100', gpus: 2, rack: 'r1', leafSwitch: 'l1', tokenHash: 'w' });
    await s.nodes.setState(n, 'down', 'agent silent');
    await s.nodes.setState(m, 'up', 'test');
    const at = new Date(t0.getTime() + 60_000);
    const iso: NodeIsolationJson = { cgroup: 'v2', pids: true, memory: true, devices: true, uids: 'range' };
    const long = new Date(t0.getTime() - 24 * 3600_000);
    await s.nodes.advanceStream(m, 'hello-stream', 41, at);
    const first = await s.nodes.helloMany(
      [
        { id: n, isolation: iso, address: '10.0.0.7', outputDir: '/var/lib/nuri/out', stream: 'hello-stream' },
        { id: m, isolation: null, outputDir: null, stream: 'hello-stream' },
        { id: '00000000-0000-0000-0000-000000000000', isolation: null, outputDir: null, stream: 'hello-stream' },
      ],
      at,
      'gw-1',
      long,
    );
    expect([...first.came]).toEqual([n]);
    // Their GPUs in index order and their streams' positions (-1: never seen), in the same statement.
    expect(first.gpus.get(n)!.map((g) => g.index)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(first.gpus.get(m)!.map((g) => g.index)).toEqual([0, 1]);
    expect(first.gpus.get(n)![0]).toEqual({ index: 0, uuid: null, model: null, healthy: true });
    expect([first.seqs.get(m), first.seqs.get(n)]).toEqual([41, -1]);
    expect(first.pruned.size).toBe(0);
    const row = async (id: string) => (await sql<{ state: string; state_reason: string; connected: boolean; gateway_id: string; address: string | null; output_dir: string | null; isolation: unknown; last_heartbeat_at: Date }>`select * from nodes where id = ${id}`.execute(tdb.handle.db)).rows[0]!;
    expect(await row(n)).toMatchObject({ state: 'up', state_reason: 'agent connected', connected: true, gateway_id: 'gw-1', address: '10.0.0.7', output_dir: '/var/lib/nuri/out', isolation: iso, last_heartbeat_at: at });
    expect(await row(m)).toMatchObject({ state: 'up', state_reason: 'test', connected: true, gateway_id: 'gw-1', isolation: null, output_dir: null });
    // Up already: not "came up"; no address reported keeps the one known; none of the rest kept.
    expect([...(await s.nodes.helloMany([{ id: n, isolation: null, outputDir: null, stream: 'hello-stream' }], at, 'gw-2', long)).came]).toEqual([]);
    expect(await row(n)).toMatchObject({ state: 'up', gateway_id: 'gw-2', address: '10.0.0.7', output_dir: null, isolation: null });
    // An operator's drain outlives a reconnect.
    await s.nodes.setState(n, 'drained', 'maintenance');
    expect([...(await s.nodes.helloMany([{ id: n, isolation: null, outputDir: null, stream: 'hello-stream' }], at, 'gw-2', long)).came]).toEqual([]);
    expect(await row(n)).toMatchObject({ state: 'drained', state_reason: 'maintenance' });
    for (const id of [n, m]) await s.nodes.setState(id, 'drained', 'test');
  });

  it('records liveness of many nodes, and brings up only those marked down, while a batch of hellos writes the same rows', async () => {
    const at = new Date(t0.getTime() + 5000);
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push(await s.nodes.create({ name: `live-${_kind}-${i}`, gpuType: 'h100', gpus: 2, rack: 'r1', leafSwitch: 'l1', tokenHash: 'z' }));
    for (const id of ids) await s.nodes.setState(id, 'up', 'test');
    await s.nodes.setState(ids[1]!, 'down', 'agent silent');
    await s.nodes.setState(ids[2]!, 'drained', 'maintenance');
    // Lists in opposite orders, run together: rows are locked in one order, so neither waits on the other for ever.
    await Promise.all([
      s.nodes.heartbeatMany([...ids.slice(0, 4)].reverse(), at),
      s.nodes.helloMany(ids.slice(2).map((id) => ({ id, isolation: null, outputDir: null, stream: 's' })), at, 'gw-1', t0),
      s.nodes.heartbeatMany(ids.slice(1), at),
    ]);
    const rows = (await sql<{ id: string; state: string; last_heartbeat_at: Date | null }>`select id, state, last_heartbeat_at from nodes where id = any(${ids}::uuid[])`.execute(tdb.handle.db)).rows;
    for (const r of rows) expect(r.last_heartbeat_at).toEqual(at);
    expect(await s.nodes.markUpMany([...ids].reverse(), 'agent heard again')).toEqual([`live-${_kind}-1`]);
    const state = async (id: string) => (await sql<{ state: string; state_reason: string }>`select state, state_reason from nodes where id = ${id}`.execute(tdb.handle.db)).rows[0];
    expect(await state(ids[1]!)).toEqual({ state: 'up', state_reason: 'agent heard again' });
    expect(await state(ids[2]!)).toEqual({ state: 'drained', state_reason: 'maintenance' });
    expect(await s.nodes.markUpMany(ids, 'again')).toEqual([]);
    for (const id of ids) await s.nodes.setState(id, 'drained', 'test');
  });

  it("counts no silence for a node whose own gateway died recently: its agent is reconnecting", async () => {
    const at = (sec: number) => new Date(t0.getTime() + (sec - 2000) * 1000); // before the next test's gateways
    const n = await s.nodes.create({ name: `gw-node-${_kind}`, gpuType: 'h100', gpus: 8, rack: 'r1', leafSwitch: 'l1', tokenHash: 'y' });
    await s.nodes.setState(n, 'up', 'test');
    await s.nodes.gatewayAlive('gw-dead', at(0), at(990));
    await s.nodes.markConnected(n, true, at(990), 'gw-dead');
    // Down after 10 s of silence, 30 s of reconnect allowance; a gateway unseen for 3 s is dead.
    const silent = async (nowSec: number) =>
      (await s.nodes.silentSince(at(nowSec - 10), { liveSince: at(nowSec - 3), lostAfter: at(nowSec - 10 - 30) })).some((x) => x.id === n);
    expect(await silent(1005)).toBe(false); // its gateway died 15 s ago: the agent is within its allowance
    expect(await silent(1035)).toBe(true); // 45 s (> 10 + 30): the node itself is silent
    await s.nodes.gatewayAlive('gw-dead', at(0), at(1034)); // a live gateway does not shield a silent node
    expect(await silent(1035)).toBe(true);
    await s.nodes.setState(n, 'drained', 'test');
  });

  it('says since when the newest live gateway runs, and none when every gateway went quiet', async () => {
    const at = (s: number) => new Date(t0.getTime() + s * 1000);
    await s.nodes.gatewayAlive('gw-a', at(0), at(100));
    await s.nodes.gatewayAlive('gw-b', at(50), at(100));
    expect(await s.nodes.newestLiveGatewayStart(at(95))).toEqual(at(50));
    await s.nodes.gatewayAlive('gw-a', at(0), at(120));
    expect(await s.nodes.newestLiveGatewayStart(at(115))).toEqual(at(0));
    expect(await s.nodes.newestLiveGatewayStart(at(130))).toBeNull();
    // A gateway's start drops the rows of long-dead ones.
    expect(await s.nodes.forgetGateways(at(110))).toBeGreaterThanOrEqual(1);
    expect(await s.nodes.newestLiveGatewayStart(at(95))).toEqual(at(0));
  });
});

describe("the leader's change reads on a real PostgreSQL", () => {
  let tdb: TestDatabase;
  beforeAll(async () => {
    tdb = await createTestDatabase();
  });
  afterAll(async () => tdb?.drop());

  it('find what changed by index, not by reading every job, node and GPU, even before any ANALYZE saw the tables', async () => {
    const s = await seed(tdb.handle);
    const db = tdb.handle.db;
    // A new deployment's first minutes: 20,000 jobs and 500 nodes of 8 GPUs that no ANALYZE has seen.
    await sql`insert into jobs (tenant_id, user_id, name, state, gpus, gpu_type, priority, time_limit_seconds, command, env, submitted_at, queued_at)
      select ${s.tenantId}, ${s.userId}, 'bulk-' || g, 'pending', 1, 'h100', 'normal', 60, '["true"]'::jsonb, '{}'::jsonb, now(), now() from generate_series(1, 20000) g`.execute(db);
    await sql`with n as (insert into nodes (name, gpu_type, rack, leaf_switch, agent_token_hash) select 'bulk-' || g, 'h100', 'r', 'l', 'h' from generate_series(1, 500) g returning id)
      insert into gpus (node_id, index) select n.id, g from n, generate_series(0, 7) g`.execute(db);
    const jobsFrom = await s.jobs.changeHorizon();
    const nodesFrom = (await s.nodes.forScheduling()).horizon;
    const id = await s.job('newcomer');
    const node = await s.nodes.create({ name: 'n-new', gpuType: 'h800', gpus: 8, rack: 'r9', leafSwitch: 'l9', tokenHash: 'z' });
    // Sequential scans a read made (pg_stat_xact_user_tables also holds what this connection did
    // before and has not yet reported: hence the difference).
    const seqScansOf = async (read: (tx: typeof db) => Promise<unknown>) =>
      db.transaction().execute(async (tx) => {
        const scans = async () =>
          Object.fromEntries(
            (await sql<{ relname: string; seq_scan: string }>`select relname, seq_scan from pg_stat_xact_user_tables where relname in ('jobs', 'nodes', 'gpus')`.execute(tx)).rows.map((r) => [
              r.relname,
              Number(r.seq_scan),
            ]),
          );
        const before = await scans();
        await read(tx);
        const after = await scans();
        return Object.fromEntries(['jobs', 'nodes', 'gpus'].map((t) => [t, (after[t] ?? 0) - (before[t] ?? 0)]));
      });
    expect(
      await seqScansOf(async (tx) => expect((await new JobsRepository(tx).changedSince(jobsFrom)).rows.map((j) => j.id)).toEqual([id])),
    ).toMatchObject({ jobs: 0 });
    expect((await s.nodes.forScheduling(nodesFrom)).changed.map((n) => n.id)).toEqual([node]);
    // The nodes and GPUs that changed, as forScheduling finds them (its joins to the few found may scan).
    for (const table of ['nodes', 'gpus']) {
      const plan = (await sql<{ 'QUERY PLAN': string }>`explain select 1 from ${sql.table(table)} where ${changedFrom(nodesFrom)}`.execute(db)).rows.map((r) => r['QUERY PLAN']).join('\n');
      expect(plan).toContain(`${table}_change_xid`);
      expect(plan).not.toMatch(/Seq Scan/);
    }
  });
});

describe('the database refuses a GPU held by two live allocations', () => {
  let tdb: TestDatabase;
  beforeAll(async () => {
    tdb = await createTestDatabase();
  });
  afterAll(async () => tdb?.drop());

  it('lets exactly one of two concurrent transactions allocate the same GPU', async () => {
    const s = await seed(tdb.handle);
    const a = await s.job('a', 1);
    const b = await s.job('b', 1);
    // Two transactions that both believe GPU 3 is free, bypassing the repository's checks.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const attempt = (jobId: string) =>
      tdb.handle.db.transaction().execute(async (tx) => {
        await tx.insertInto('allocations').values({ job_id: jobId, node_id: s.nodeId, gpu_index: 3, created_at: t0 }).execute();
        await gate;
      });
    const results = Promise.allSettled([attempt(a), attempt(b)]);
    await new Promise((r) => setTimeout(r, 200));
    release();
    const [ra, rb] = await results;
    const outcomes = [ra.status, rb.status].sort();
    expect(outcomes).toEqual(['fulfilled', 'rejected']);
    const refused = (ra.status === 'rejected' ? ra : rb) as PromiseRejectedResult;
    expect(String(refused.reason)).toMatch(/allocations_one_live_per_gpu/);
  });
});

describe('a drain racing a commit', () => {
  let tdb: TestDatabase;
  beforeAll(async () => {
    tdb = await createTestDatabase();
  });
  afterAll(async () => tdb?.drop());

  it('never leaves a node drained with a job on it', async () => {
    const s = await seed(tdb.handle);
    for (let i = 0; i < 30; i++) {
      await s.nodes.setState(s.nodeId, 'up', 'back');
      const id = await s.job(`race-${i}`, 1);
      // The scheduler commits a start while an operator drains the node (drain, then settle).
      const [commit] = await Promise.all([
        s.jobs.commitStarts([{ jobId: id, gpuModel: 'h100', placement: [{ nodeId: s.nodeId, gpuIndices: [0] }] }], t0),
        (async () => {
          await s.nodes.setState(s.nodeId, 'draining', 'test', ['up']);
          await s.nodes.settleDraining(s.nodeId);
        })(),
      ]);
      const node = (await s.nodes.list({ names: ['n1'] }))[0]!;
      const onNode = node.gpus.filter((g) => g.jobId !== null).length;
      expect({ state: node.state, jobs: onNode }).toEqual(commit.started.length ? { state: 'draining', jobs: 1 } : { state: 'drained', jobs: 0 });
      if (commit.started.length) await s.jobs.transition(id, ['running'], 'completed', 'done', t0);
    }
  });
});

// Other sessions are needed to watch locks: a real PostgreSQL only (PGlite has one connection).
describe('node locks on a real PostgreSQL', () => {
  let tdb: TestDatabase;
  let nodes: NodesRepository;
  beforeAll(async () => {
    tdb = await createTestDatabase();
    nodes = new NodesRepository(tdb.handle.db);
  });
  afterAll(async () => tdb?.drop());

  /**
   * Holds the first of 40 nodes (in id order) FOR UPDATE, runs `lockMany` over all of them, and
   * once it waits on that row (its statement matching `waiting`) checks that it holds none of the
   * others: a statement that locks many nodes in id order cannot deadlock with another that does.
   */
  async function locksInIdOrder<T>(prefix: string, lockMany: (idsInOrder: string[]) => Promise<T>, waiting: string): Promise<T> {
    const { Client } = await import('pg');
    const ids: string[] = [];
    for (let i = 0; i < 40; i++) ids.push(await nodes.create({ name: `${prefix}-${i}`, gpuType: 'h100', gpus: 1, rack: 'r1', leafSwitch: 'l1', tokenHash: prefix }));
    const sorted = [...ids].sort();
    const holder = new Client({ connectionString: tdb.url });
    const probe = new Client({ connectionString: tdb.url });
    await Promise.all([holder.connect(), probe.connect()]);
    try {
      await holder.query('begin');
      await holder.query('select id from nodes where id = $1 for update', [sorted[0]]);
      const locking = lockMany(sorted);
      // Until it waits on the held row (it cannot finish while the row is held).
      for (let i = 0; i < 100; i++) {
        const w = await probe.query(`select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and query like $1`, [`%${waiting}%`]);
        if (w.rows[0].n > 0) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      // Every other node is free to lock.
      await probe.query('begin');
      const free = await probe.query('select id from nodes where id = any($1::uuid[]) for update skip locked', [sorted.slice(1)]);
      expect(free.rows.length).toBe(sorted.length - 1);
      await probe.query('rollback');
      await holder.query('rollback');
      return await locking;
    } finally {
      await Promise.allSettled([holder.end(), probe.end()]);
      for (const id of ids) await nodes.setState(id, 'drained', 'test');
    }
  }

  it('locks the nodes of a liveness flush in id order: waiting on the first, it holds none of the others', async () => {
    // Given highest id first: in that order (or the table's) the flush would hold some already.
    await locksInIdOrder('order', (sorted) => nodes.heartbeatMany([...sorted].reverse(), new Date(t0.getTime() + 9000)), 'last_heartbeat_at');
  });

  it("takes the nodes' key locks of a batch of stream advances in id order, whatever order the batch came in", async () => {
    // Highest id first: the order a liveness flush (FOR UPDATE, id order) would deadlock with.
    const advanced = await locksInIdOrder('advance', (sorted) => nodes.advanceStreamMany([...sorted].reverse().map((nodeId) => ({ nodeId, stream: 's', seq: 1 })), t0), 'insert into agent_streams');
    expect(advanced).toEqual(Array.from({ length: 40 }, () => true));
  });
});
