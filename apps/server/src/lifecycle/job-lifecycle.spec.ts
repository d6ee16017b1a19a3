import { IdentityRepository, JobsRepository, NodesRepository, TenantsRepository, type GangState } from '@nuri/db';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../../../../libs/db/src/testing';
import { rankExitDecision } from './job-lifecycle';

const job = { stop_requested: null, requeue: true, time_limit_seconds: 600 } as const;
const exit = (exitCode: number | null, over: Partial<{ signal: string; cause: 'exit' | 'timeout' | 'cancelled' | 'spawn_failed' | 'lost'; message: string }> = {}) => ({
  kind: 'exited' as const,
  jobId: 'j',
  exitCode,
  signal: over.signal ?? null,
  cause: over.cause ?? 'exit',
  ...(over.message ? { message: over.message } : {}),
});
const nodes = [
  { id: 'n1', name: 'h100-01' },
  { id: 'n2', name: 'h100-02' },
  { id: 'n3', name: 'h100-03' },
];
const gang = (rank: number, exits: GangState['exits'] = [], n = 2): GangState => ({ nodes: nodes.slice(0, n), rank, exits });
const clean = (rank: number) => ({ nodeId: nodes[rank]!.id, rank, exitCode: 0, signal: null, cause: 'exit' });

describe('what one rank exit means for its run', () => {
  it('ends a single-node job as before (no gang)', () => {
    expect(rankExitDecision(job, exit(0))).toEqual({ to: 'completed', reason: 'exit code 0', exitCode: 0 });
    expect(rankExitDecision(job, exit(3))).toEqual({ to: 'failed', reason: 'exit code 3', exitCode: 3 });
  });

  it('keeps a multi-node job running while a rank that exited 0 waits for the others', () => {
    expect(rankExitDecision(job, exit(0), gang(0))).toEqual({ keep: { exitCode: 0, signal: null, cause: 'exit' } });
    expect(rankExitDecision(job, exit(0), gang(2, [clean(0)], 3))).toEqual({ keep: { exitCode: 0, signal: null, cause: 'exit' } });
  });

  it('completes the job only at the last rank that exits 0', () => {
    expect(rankExitDecision(job, exit(0), gang(1, [clean(0)]))).toMatchObject({ to: 'completed', exitCode: 0, reason: 'exit code 0 on all 2 nodes' });
    expect(rankExitDecision(job, exit(0), gang(0, [clean(1), clean(2)], 3))).toMatchObject({ to: 'completed' });
  });

  it('ends the job at the first rank that fails, with its exit code and a reason naming rank and node', () => {
    expect(rankExitDecision(job, exit(3), gang(1))).toEqual({
      to: 'failed',
      reason: 'rank 1 on h100-02: exit code 3',
      exitCode: 3,
      rankExit: { exitCode: 3, signal: null, cause: 'exit' },
    });
    // Even after another rank already exited 0.
    expect(rankExitDecision(job, exit(null, { signal: 'SIGKILL' }), gang(1, [clean(0)]))).toMatchObject({ to: 'failed', reason: 'rank 1 on h100-02: killed by SIGKILL' });
    expect(rankExitDecision(job, exit(null, { signal: 'SIGTERM', cause: 'timeout' }), gang(0))).toMatchObject({ to: 'timeout', reason: /^rank 0 on h100-01: exceeded its time limit/ });
    expect(rankExitDecision(job, exit(null, { cause: 'spawn_failed', message: 'working directory /x does not exist on node h100-02' }), gang(1))).toMatchObject({
      to: 'failed',
      reason: 'rank 1 on h100-02: could not start: working directory /x does not exist on node h100-02',
    });
    // A lost rank follows the requeue rule, named.
    expect(rankExitDecision(job, exit(null, { cause: 'lost' }), gang(1))).toMatchObject({ to: 'pending', reason: /^rank 1 on h100-02: the agent lost the job; requeued/ });
    expect(rankExitDecision({ ...job, requeue: false }, exit(null, { cause: 'lost' }), gang(1))).toMatchObject({ to: 'node_failed' });
  });

  it('keeps the cancel and preemption rules: a stop the server asked for decides, whatever the rank did', () => {
    expect(rankExitDecision({ ...job, stop_requested: 'cancel' }, exit(0), gang(0))).toMatchObject({ to: 'cancelled', reason: /^cancelled by user/ });
    expect(rankExitDecision({ ...job, stop_requested: 'preempt' }, exit(null, { signal: 'SIGTERM', cause: 'cancelled' }), gang(1))).toMatchObject({ to: 'pending', reason: /^preempted/ });
  });

  it('ignores a second report of a rank that already exited (a resend, or a lost answer to a later stop)', () => {
    expect(rankExitDecision(job, exit(0), gang(0, [clean(0)]))).toBeNull();
    expect(rankExitDecision(job, exit(null, { cause: 'lost' }), gang(0, [clean(0)]))).toBeNull();
  });
});

describe('rank exits decided on the locked row (real PostgreSQL)', () => {
  let tdb: TestDatabase;
  let jobs: JobsRepository;
  let nodeIds: string[];
  let twoNodeJob: () => Promise<string>;
  const at = new Date('2026-01-01T00:00:00Z');

  beforeAll(async () => {
    tdb = await createTestDatabase();
    const db = tdb.handle.db;
    const tenantId = await new TenantsRepository(db).create({ name: 'naver', displayName: 'Naver', weight: 1, quotas: [{ gpuType: 'h100', guaranteed: 16, limit: 16 }] });
    const userId = await new IdentityRepository(db).createUser({ name: 'alice', tenantId, role: 'researcher' });
    const nodes = new NodesRepository(db);
    nodeIds = [];
    for (const name of ['h100-02', 'h100-01']) {
      const id = await nodes.create({ name, gpuType: 'h100', gpus: 8, rack: 'r1', leafSwitch: 'l1', tokenHash: 'x' });
      await nodes.setState(id, 'up', 'test');
      nodeIds.push(id);
    }
    jobs = new JobsRepository(db);
    twoNodeJob = async () => {
      const id = await jobs.insert({ tenant_id: tenantId, user_id: userId, name: 'gang', gpus: 2, gpu_type: 'h100', priority: 'normal', time_limit_seconds: 60, command: ['true'], env: {}, working_dir: null, requeue: false, submitted_at: at });
      const r = await jobs.commitStarts([{ jobId: id, gpuModel: 'h100', placement: nodeIds.map((nodeId) => ({ nodeId, gpuIndices: [0] })) }], at);
      expect(r.started).toEqual([id]);
      return id;
    };
  });
  afterAll(async () => tdb?.drop());

  const report = (id: string, nodeId: string, exitCode: number) =>
    jobs.finishRun(id, { attempt: 1, onNode: nodeId }, (row, gang) => rankExitDecision(row, exit(exitCode), gang), at);

  it('completes exactly once when both ranks exit 0 at the same moment (two gateways)', async () => {
    for (let i = 0; i < 8; i++) {
      const id = await twoNodeJob();
      const results = await Promise.all(nodeIds.map((n) => report(id, n, 0)));
      expect(results.map((r) => r?.to).sort()).toEqual(['completed', 'running']);
      const d = (await jobs.detail(id))!;
      expect(d).toMatchObject({ state: 'completed', exit_code: 0, reason: 'exit code 0 on all 2 nodes' });
      expect(d.transitions.filter((t) => t.to === 'completed')).toHaveLength(1);
      const exits = await tdb.handle.db.selectFrom('job_rank_exits').select(['rank', 'exit_code']).where('job_id', '=', id).orderBy('rank').execute();
      expect(exits).toEqual([{ rank: 0, exit_code: 0 }, { rank: 1, exit_code: 0 }]);
    }
  });

  it('keeps the job running after rank 0 exits 0, then fails it at rank 1 exit 3 (ranks by node name), ignoring later exits', async () => {
    const id = await twoNodeJob();
    // nodeIds[1] is h100-01: rank 0.
    expect(await report(id, nodeIds[1]!, 0)).toMatchObject({ to: 'running' });
    expect((await jobs.find(id))!.state).toBe('running');
    expect(await report(id, nodeIds[1]!, 0)).toBeNull(); // a resend of that exit
    expect(await report(id, nodeIds[0]!, 3)).toMatchObject({ to: 'failed' });
    expect(await jobs.find(id)).toMatchObject({ state: 'failed', exit_code: 3, reason: 'rank 1 on h100-02: exit code 3' });
    expect(await report(id, nodeIds[0]!, 0)).toBeNull();
  });
});
