import { describe, expect, it } from 'vitest';
import { NodeState } from './cluster';
import { ReclaimOption, chooseVictims, optionOrder, splitOrder, victimOrder } from './reclaim';
import { Harness } from './testing/harness';
import { RunningJob } from './types';

const T0 = Date.UTC(2026, 0, 1);
const MIN = 60_000;

/** A running job: `started` minutes after T0. */
function run(id: string, o: { priority?: number; started?: number; gpus?: number } = {}): RunningJob {
  const startedAt = T0 + (o.started ?? 0) * MIN;
  return { id, tenantId: 'b', gpus: o.gpus ?? 1, gpuModel: 'h100', priority: o.priority ?? 1, submittedAt: startedAt, startedAt, timeLimitSeconds: 3600, placement: [], stopping: false };
}

describe('victimOrder: which of a node’s candidates reclaim stops first', () => {
  const cases: { name: string; jobs: RunningJob[]; first: string[] }[] = [
    {
      name: '1. lower priority first, however recently started',
      jobs: [run('high', { priority: 2, started: 50 }), run('low', { priority: 0, started: 0 }), run('normal', { priority: 1, started: 30 })],
      first: ['low', 'normal', 'high'],
    },
    {
      name: '2. same priority: most recently started first (least work lost)',
      jobs: [run('old', { started: 0 }), run('new', { started: 40 }), run('mid', { started: 20 })],
      first: ['new', 'mid', 'old'],
    },
    {
      name: '3. same priority and start: job id',
      jobs: [run('c', { started: 5 }), run('a', { started: 5 }), run('b', { started: 5 })],
      first: ['a', 'b', 'c'],
    },
    {
      name: 'criteria in order: priority before start before id',
      jobs: [run('z', { priority: 0, started: 0 }), run('y', { priority: 1, started: 90 }), run('x', { priority: 0, started: 0 })],
      first: ['x', 'z', 'y'],
    },
  ];
  it.each(cases)('$name', ({ jobs, first }) => {
    expect([...jobs].sort(victimOrder).map((j) => j.id)).toEqual(first);
    // The order does not depend on the input order.
    expect([...jobs].reverse().sort(victimOrder).map((j) => j.id)).toEqual(first);
  });
});

describe('chooseVictims: the fewest candidates, in victimOrder, that free enough on one node', () => {
  const cand = (id: string, g: number, priority = 1) => ({ job: run(id, { priority, gpus: g }), g });
  const cases: { name: string; ordered: { job: RunningJob; g: number }[]; want: number; chosen: string[] | null }[] = [
    { name: 'the first candidate alone when it frees enough', ordered: [cand('a', 4), cand('b', 4)], want: 3, chosen: ['a'] },
    { name: 'candidates in order until they free enough', ordered: [cand('a', 1), cand('b', 2), cand('c', 4, 2)], want: 3, chosen: ['a', 'b'] },
    { name: 'all of them together free too few: none', ordered: [cand('a', 1), cand('b', 2)], want: 4, chosen: null },
    {
      name: 'one later job that covers the need alone and is no more protected replaces several',
      ordered: [cand('a', 1, 0), cand('b', 1, 1), cand('c', 4, 1)],
      want: 2,
      chosen: ['c'],
    },
    {
      name: 'but not one of higher priority than the set it would replace',
      ordered: [cand('a', 1, 0), cand('b', 1, 0), cand('c', 4, 2)],
      want: 2,
      chosen: ['a', 'b'],
    },
    {
      name: 'a victim whose GPUs are not needed once later ones are taken is dropped (most protected first)',
      ordered: [cand('a', 1, 0), cand('b', 1, 0), cand('c', 2, 1)],
      want: 3,
      chosen: ['a', 'c'],
    },
  ];
  it.each(cases)('$name', ({ ordered, want, chosen }) => {
    const got = chooseVictims(ordered, want);
    expect(got === null ? null : got.map((v) => v.job.id)).toEqual(chosen);
  });
});

describe('optionOrder: on which nodes reclaim starts the job', () => {
  const node = (idx: number) => ({ idx }) as NodeState;
  const opt = (name: string, idx: number, gpus: number, count: number, maxPriority: number) => ({ name, o: { st: node(idx), victims: [], gpus, count, maxPriority } as ReclaimOption });
  const cases: { name: string; options: { name: string; o: ReclaimOption }[]; first: string[] }[] = [
    {
      name: '1. fewest GPUs of whole victim jobs (a 64-GPU gang costs more than two small jobs)',
      options: [opt('gang', 0, 64, 1, 0), opt('two small', 5, 2, 2, 1), opt('free', 9, 0, 0, -Infinity)],
      first: ['free', 'two small', 'gang'],
    },
    { name: '2. then fewest victims', options: [opt('three', 0, 4, 3, 0), opt('one', 3, 4, 1, 0)], first: ['one', 'three'] },
    { name: '3. then the lowest highest priority', options: [opt('high', 0, 4, 1, 2), opt('low', 3, 4, 1, 0)], first: ['low', 'high'] },
    { name: '4. then node order', options: [opt('n7', 7, 0, 0, -Infinity), opt('n2', 2, 0, 0, -Infinity)], first: ['n2', 'n7'] },
  ];
  it.each(cases)('$name', ({ options, first }) => {
    expect([...options].sort((a, b) => optionOrder(a.o, b.o)).map((x) => x.name)).toEqual(first);
  });
});

describe('splitOrder: which running jobs fill a tenant’s guarantee first (the rest are borrowed)', () => {
  it.each([
    { name: 'multi-node jobs first', jobs: [run('small', { started: 0 }), run('gang', { gpus: 16, started: 60 })], first: ['gang', 'small'] },
    { name: 'then the oldest', jobs: [run('new', { started: 30 }), run('old', { started: 0 })], first: ['old', 'new'] },
    { name: 'then id', jobs: [run('b'), run('a')], first: ['a', 'b'] },
  ])('$name', ({ jobs, first }) => {
    expect([...jobs].sort(splitOrder).map((j) => j.id)).toEqual(first);
  });
});

describe('reclaim through a pass: on which node the job starts, and who is stopped for it', () => {
  // Tenant a is guaranteed 8 H100 and runs nothing; everything b runs is borrowed (guarantee 0).
  type Run = { id: string; gpus: number; nodes: string[]; startedAgoH?: number; priority?: number };
  const cases: { name: string; nodes: number; runs: Run[]; ask: number; preempted: string[] }[] = [
    {
      name: '1. fewest GPUs of whole victim jobs: a 4-GPU job on a later node, not a 16-GPU gang on the first',
      nodes: 3,
      runs: [
        { id: 'b-gang', gpus: 16, nodes: ['h100-000', 'h100-001'], startedAgoH: 1 },
        { id: 'b-4a', gpus: 4, nodes: ['h100-002'], startedAgoH: 3 },
        { id: 'b-4b', gpus: 4, nodes: ['h100-002'], startedAgoH: 4 },
      ],
      ask: 4,
      preempted: ['b-4a'],
    },
    {
      name: '2. then fewest victims: one 2-GPU job on the second node, not two 1-GPU jobs on the first',
      nodes: 2,
      runs: [
        { id: 'b-1a', gpus: 1, nodes: ['h100-000'] },
        { id: 'b-1b', gpus: 1, nodes: ['h100-000'] },
        { id: 'b-6a', gpus: 6, nodes: ['h100-000'], priority: 2 },
        { id: 'b-2', gpus: 2, nodes: ['h100-001'] },
        { id: 'b-6b', gpus: 6, nodes: ['h100-001'], priority: 2 },
      ],
      ask: 2,
      preempted: ['b-2'],
    },
    {
      name: '3. then the lower priority: a low job on the second node, not a high one on the first',
      nodes: 2,
      runs: [
        { id: 'b-high', gpus: 2, nodes: ['h100-000'], priority: 2 },
        { id: 'b-6a', gpus: 6, nodes: ['h100-000'], priority: 2, startedAgoH: 5 },
        { id: 'b-low', gpus: 2, nodes: ['h100-001'], priority: 0 },
        { id: 'b-6b', gpus: 6, nodes: ['h100-001'], priority: 2, startedAgoH: 5 },
      ],
      ask: 2,
      preempted: ['b-low'],
    },
    {
      name: '4. then node order, not job ids',
      nodes: 2,
      runs: [
        { id: 'b-z', gpus: 8, nodes: ['h100-000'] },
        { id: 'b-a', gpus: 8, nodes: ['h100-001'] },
      ],
      ask: 8,
      preempted: ['b-z'],
    },
  ];
  it.each(cases)('$name', ({ nodes, runs, ask, preempted }) => {
    const h = new Harness().addNodes('h100', nodes).addTenant('a', { h100: [8, 16] }).addTenant('b', { h100: [0, 64] });
    for (const r of runs) h.run('b', r.gpus, r.nodes, { id: r.id, startedAgoH: r.startedAgoH ?? 2, priority: r.priority ?? 1 });
    const id = h.submit('a', ask, { type: 'h100' });
    h.pass();
    expect(h.preempted()).toEqual(preempted);
    expect(h.reason(id)).toBe('waiting_for_reclaim');
  });
});
