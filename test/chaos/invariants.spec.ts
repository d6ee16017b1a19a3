import { describe, expect, it } from 'vitest';
import { FAULT_KINDS, planFaults } from './faults';
import { finalChecks, SampleChecker, type DbJob, type DbTransition, type FinalInput, type Sample } from './invariants';
import type { JobProcess } from './proc-scan';
import { makeWorkload, type JobSpec } from './workload';

/** The chaos checker itself, on made-up histories: it must flag what it claims to, and only that. */

const J = '11111111-1111-1111-1111-111111111111';
const K = '22222222-2222-2222-2222-222222222222';
const proc = (jobId: string, node: string, pgid: number, gpus: number[], pid = pgid): JobProcess => ({ pid, pgid, jobId, gpus, cwd: `/x/agents/${node}/jobs/${jobId}`, node });

function sampler(bound = 2000) {
  const c = new SampleChecker({ persistBoundMs: bound, maxStepMs: 1500 });
  const at = (ms: number, s: Partial<Sample>) =>
    c.observe({ at: ms, jobs: new Map(), running: [], procs: [], runningFiles: new Map(), healthy: () => true, ...s });
  return { c, at };
}

describe('SampleChecker', () => {
  it('flags a running job without its process once it lasts past the bound of healthy time', () => {
    const { c, at } = sampler();
    const running = [{ jobId: J, attempt: 1, node: 'n1' }];
    const jobs = new Map([[J, { state: 'running', attempts: 1, gpus: 1 }]]);
    for (let t = 0; t <= 2000; t += 500) at(t, { jobs, running });
    expect(c.violations()).toEqual([]);
    at(2500, { jobs, running });
    expect(c.violations().map((v) => v.invariant)).toEqual(['running-without-process']);
  });

  it('does not count time while the node cannot act (agent killed or frozen)', () => {
    const { c, at } = sampler();
    const running = [{ jobId: J, attempt: 1, node: 'n1' }];
    const jobs = new Map([[J, { state: 'running', attempts: 1, gpus: 1 }]]);
    for (let t = 0; t <= 10_000; t += 500) at(t, { jobs, running, healthy: () => false });
    expect(c.violations()).toEqual([]);
  });

  it('forgets a mismatch that resolves in time (a start on its way)', () => {
    const { c, at } = sampler();
    const running = [{ jobId: J, attempt: 1, node: 'n1' }];
    const jobs = new Map([[J, { state: 'running', attempts: 1, gpus: 1 }]]);
    at(0, { jobs, running });
    at(1500, { jobs, running });
    at(2000, { jobs, running, procs: [proc(J, 'n1', 100, [0])] });
    at(3000, { jobs, running });
    at(4000, { jobs, running });
    expect(c.violations()).toEqual([]);
  });

  it('flags a process whose job has ended, or that runs an older attempt', () => {
    const { c, at } = sampler();
    const jobs = new Map([
      [J, { state: 'cancelled', attempts: 1, gpus: 1 }],
      [K, { state: 'running', attempts: 2, gpus: 1 }],
    ]);
    const files = new Map([['n2', new Map([[K, { pgid: 200, attempt: 1 }]])]]);
    const procs = [proc(J, 'n1', 100, [0]), proc(K, 'n2', 200, [0])];
    for (let t = 0; t <= 3000; t += 500) at(t, { jobs, procs, running: [{ jobId: K, attempt: 2, node: 'n2' }], runningFiles: files });
    const v = c.violations();
    expect(v.filter((x) => x.invariant === 'process-without-running-job').map((x) => x.job).sort()).toEqual([J, K]);
  });

  it('flags a GPU used by two process groups in consecutive samples, not in one', () => {
    const { c, at } = sampler(60_000);
    const jobs = new Map([
      [J, { state: 'running', attempts: 1, gpus: 2 }],
      [K, { state: 'running', attempts: 1, gpus: 1 }],
    ]);
    const running = [
      { jobId: J, attempt: 1, node: 'n1' },
      { jobId: K, attempt: 1, node: 'n1' },
    ];
    at(0, { jobs, running, procs: [proc(J, 'n1', 100, [0, 1]), proc(K, 'n1', 200, [1])] });
    at(500, { jobs, running, procs: [proc(J, 'n1', 100, [0, 1])] });
    expect(c.violations()).toEqual([]);
    at(1000, { jobs, running, procs: [proc(J, 'n1', 100, [0, 1]), proc(K, 'n1', 200, [1])] });
    at(1500, { jobs, running, procs: [proc(J, 'n1', 100, [0, 1]), proc(K, 'n1', 200, [1])] });
    expect(c.violations().map((v) => v.invariant)).toEqual(['gpu-held-twice']);
  });

  it('flags one attempt started twice on a node, and an attempt on more nodes than it spans', () => {
    const { c, at } = sampler(60_000);
    const jobs = new Map([[J, { state: 'running', attempts: 1, gpus: 8 }]]);
    const running = [{ jobId: J, attempt: 1, node: 'n1' }];
    at(0, { jobs, running, procs: [proc(J, 'n1', 100, [0])], runningFiles: new Map([['n1', new Map([[J, { pgid: 100, attempt: 1 }]])]]) });
    at(500, { jobs, running, procs: [proc(J, 'n1', 300, [0])], runningFiles: new Map([['n1', new Map([[J, { pgid: 300, attempt: 1 }]])]]) });
    expect(c.violations().map((v) => v.invariant)).toEqual(['one-process-per-attempt']);
    const files = new Map([
      ['n1', new Map([[J, { pgid: 300, attempt: 1 }]])],
      ['n2', new Map([[J, { pgid: 400, attempt: 1 }]])],
    ]);
    at(1000, { jobs, running, procs: [proc(J, 'n1', 300, [0]), proc(J, 'n2', 400, [0])], runningFiles: files });
    at(1500, { jobs, running, procs: [proc(J, 'n1', 300, [0]), proc(J, 'n2', 400, [0])], runningFiles: files });
    expect(c.violations().filter((v) => v.invariant === 'one-process-per-attempt')).toHaveLength(2);
  });
});

describe('finalChecks', () => {
  const spec = (over: Partial<JobSpec> = {}): JobSpec => ({
    index: 0,
    name: 'j',
    tenant: 'alpha',
    gpus: 1,
    gpuType: 'h100',
    kind: 'ok',
    sleepSeconds: 2,
    timeLimitSeconds: 30,
    requeue: true,
    priority: 'normal',
    submitAtMs: 0,
    cancelDelayMs: 0,
    command: ['sh', '-c', 'exit 0'],
    ...over,
  });
  const d = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s));
  const tr = (s: number, from: string | null, to: string, reason = ''): DbTransition => ({ job_id: J, at: d(s), from_state: from, to_state: to, reason });
  const job = (over: Partial<DbJob> = {}): DbJob => ({ id: J, name: 'j', state: 'completed', reason: 'exit code 0', gpus: 1, requeue: true, attempts: 1, exit_code: 0, time_limit_seconds: 30, ...over });
  const base = (over: Partial<FinalInput> = {}): FinalInput => ({
    jobs: [job()],
    transitions: [tr(0, null, 'pending'), tr(1, 'pending', 'running'), tr(3, 'running', 'completed')],
    allocations: [{ job_id: J, node: 'n1', gpu_index: 0, created_at: d(1), released_at: d(3) }],
    overlaps: [],
    specs: new Map([[J, spec()]]),
    cancels: new Map(),
    observedAttempts: [{ jobId: J, attempt: 1, node: 'n1', pgids: new Set([5]), firstAt: 0 }],
    leftoverProcesses: [],
    agents: [{ node: 'n1', running: {}, journalEvents: [] }],
    ...over,
  });

  it('passes a clean history', () => {
    expect(finalChecks(base())).toEqual([]);
  });

  it('flags a second exit recorded for one run', () => {
    const v = finalChecks(base({ transitions: [tr(0, null, 'pending'), tr(1, 'pending', 'running'), tr(3, 'running', 'completed'), tr(4, 'running', 'failed')] }));
    expect(v.map((x) => x.invariant)).toContain('exit-recorded-once');
  });

  it('flags a cancel answered 202 after which the job was requeued and ran again', () => {
    const answeredAt = d(2).getTime();
    const v = finalChecks(
      base({
        jobs: [job({ attempts: 2 })],
        transitions: [tr(0, null, 'pending'), tr(1, 'pending', 'running'), tr(3, 'running', 'pending', 'the agent lost the job; requeued'), tr(4, 'pending', 'running'), tr(9, 'running', 'completed')],
        allocations: [
          { job_id: J, node: 'n1', gpu_index: 0, created_at: d(1), released_at: d(3) },
          { job_id: J, node: 'n2', gpu_index: 0, created_at: d(4), released_at: d(9) },
        ],
        specs: new Map([[J, spec({ kind: 'cancel-running' })]]),
        cancels: new Map([[J, { jobId: J, sentAt: answeredAt - 10, answeredAt, status: 202, note: 'running' }]]),
      }),
    );
    expect(v.filter((x) => x.invariant === 'cancel-is-final')).toHaveLength(3);
  });

  it('lets a cancel lose to a time limit that fell due at the same time, not to one far later', () => {
    const cancelAt = (s: number) => new Map([[J, { jobId: J, sentAt: d(s).getTime(), answeredAt: d(s).getTime(), status: 202, note: 'running' }]]);
    const timedOut = { jobs: [job({ state: 'timeout', exit_code: null, time_limit_seconds: 5 })], transitions: [tr(0, null, 'pending'), tr(1, 'pending', 'running'), tr(7, 'running', 'timeout')], allocations: [{ job_id: J, node: 'n1', gpu_index: 0, created_at: d(1), released_at: d(7) }] };
    expect(finalChecks(base({ ...timedOut, cancels: cancelAt(5) }))).toEqual([]);
    const late = { jobs: [job({ state: 'timeout', exit_code: null, time_limit_seconds: 30 })], transitions: [tr(0, null, 'pending'), tr(1, 'pending', 'running'), tr(32, 'running', 'timeout')], allocations: [{ job_id: J, node: 'n1', gpu_index: 0, created_at: d(1), released_at: d(32) }] };
    expect(finalChecks(base({ ...late, cancels: cancelAt(3) })).map((x) => x.invariant)).toEqual(['cancel-is-final']);
  });

  it('wants a requeueable job that lost its node to run again and finish', () => {
    const v = finalChecks(
      base({
        jobs: [job({ state: 'node_failed', exit_code: null })],
        transitions: [tr(0, null, 'pending'), tr(1, 'pending', 'running'), tr(3, 'running', 'node_failed', 'node n1 went down')],
      }),
    );
    expect(v.map((x) => x.invariant)).toEqual(['expected-outcome']);
    const ok = finalChecks(
      base({
        jobs: [job({ state: 'node_failed', exit_code: null, requeue: false })],
        transitions: [tr(0, null, 'pending'), tr(1, 'pending', 'running'), tr(3, 'running', 'node_failed', 'node n1 went down')],
        specs: new Map([[J, spec({ requeue: false })]]),
      }),
    );
    expect(ok).toEqual([]);
  });

  it('flags overlapping allocations, a GPU left allocated, leftovers on the node', () => {
    const v = finalChecks(
      base({
        allocations: [{ job_id: J, node: 'n1', gpu_index: 0, created_at: d(1), released_at: null }],
        overlaps: [{ node: 'n1', gpu_index: 0, a_job: J, b_job: K, a_from: d(1), a_to: d(3), b_from: d(2), b_to: d(4) }],
        leftoverProcesses: [proc(J, 'n1', 100, [0])],
        agents: [{ node: 'n1', running: { [J]: { pgid: 100, attempt: 1 } }, journalEvents: [{ kind: 'exited', jobId: J, attempt: 1 }] }],
      }),
    );
    expect(v.map((x) => x.invariant).sort()).toEqual(['agent-state-clean', 'agent-state-clean', 'allocations-match-transitions', 'gpu-held-twice', 'process-without-running-job']);
  });

  it('flags a process of an attempt on a node that attempt was never placed on', () => {
    const v = finalChecks(base({ observedAttempts: [{ jobId: J, attempt: 1, node: 'n9', pgids: new Set([5]), firstAt: 0 }] }));
    expect(v.map((x) => x.invariant)).toEqual(['process-without-running-job']);
  });
});

describe('seeded plans', () => {
  it('are the same for the same seed, and the fault plan has every kind', () => {
    const w = (seed: number) => makeWorkload({ seed, jobs: 60, submitWindowMs: 72_000, tenants: ['a', 'b'], h800: true, runTag: 't' });
    expect(w(3)).toEqual(w(3));
    expect(w(3)).not.toEqual(w(4));
    const f = planFaults({ seed: 3, durationMs: 90_000, nodeDownAfterSeconds: 5 });
    expect(f).toEqual(planFaults({ seed: 3, durationMs: 90_000, nodeDownAfterSeconds: 5 }));
    expect(new Set(f.map((x) => x.kind))).toEqual(new Set(FAULT_KINDS));
    expect(f.filter((x) => x.kind === 'stop-agent').every((x) => x.downMs > 5000)).toBe(true);
  });
});

describe('finalChecks on close starts and skewed records', () => {
  const d = (ms: number) => new Date(Date.UTC(2026, 0, 1) + ms);
  const J2 = '33333333-3333-3333-3333-333333333333';
  const tr = (ms: number, from: string | null, to: string, reason = ''): DbTransition => ({ job_id: J2, at: d(ms), from_state: from, to_state: to, reason });
  const spec: JobSpec = { index: 0, name: 'k', tenant: 'a', gpus: 1, gpuType: 'h100', kind: 'ok', sleepSeconds: 1, timeLimitSeconds: 30, requeue: true, priority: 'normal', submitAtMs: 0, cancelDelayMs: 0, command: ['true'] };
  const input = (over: Partial<FinalInput>): FinalInput => ({
    jobs: [{ id: J2, name: 'k', state: 'completed', reason: 'exit code 0', gpus: 1, requeue: true, attempts: 2, exit_code: 0, time_limit_seconds: 30 }],
    transitions: [tr(0, null, 'pending'), tr(10, 'pending', 'running'), tr(400, 'running', 'pending', 'node n1 went down; requeued'), tr(500, 'pending', 'running'), tr(9000, 'running', 'completed')],
    allocations: [
      { job_id: J2, node: 'n1', gpu_index: 0, created_at: d(10), released_at: d(400) },
      { job_id: J2, node: 'n2', gpu_index: 3, created_at: d(500), released_at: d(9000) },
    ],
    overlaps: [],
    specs: new Map([[J2, spec]]),
    cancels: new Map(),
    observedAttempts: [{ jobId: J2, attempt: 2, node: 'n2', pgids: new Set([7]), firstAt: 0 }],
    leftoverProcesses: [],
    agents: [],
    ...over,
  });

  it('tells apart two starts less than a second apart', () => {
    expect(finalChecks(input({}))).toEqual([]);
  });

  it("takes a release recorded after the agent's exit time, not one after the job's next start", () => {
    const late = (releasedAt: number) => input({
      allocations: [
        { job_id: J2, node: 'n1', gpu_index: 0, created_at: d(12), released_at: d(releasedAt) },
        { job_id: J2, node: 'n2', gpu_index: 3, created_at: d(503), released_at: d(9000) },
      ],
    });
    expect(finalChecks(late(450))).toEqual([]);
    expect(finalChecks(late(2600)).map((v) => v.invariant)).toEqual(['allocations-match-transitions']);
  });

  it('counts an allocation overlap only beyond the tolerance', () => {
    const overlaps = [{ node: 'n1', gpu_index: 0, a_job: J2, b_job: J, a_from: d(10), a_to: d(406), b_from: d(400), b_to: d(900) }];
    expect(finalChecks(input({ overlaps, overlapToleranceMs: 10 }))).toEqual([]);
    expect(finalChecks(input({ overlaps, overlapToleranceMs: 5 })).map((v) => v.invariant)).toEqual(['gpu-held-twice']);
  });
});
