import { describe, expect, it } from 'vitest';
import { HOUR, Harness } from './testing/harness';

/** Two H100 nodes and two H800 nodes on one leaf each, one tenant with room for everything. */
function small(): Harness {
  return new Harness()
    .addNodes('h100', 2, { perLeaf: 4 })
    .addNodes('h800', 2, { perLeaf: 4 })
    .addTenant('a', { h100: [16, 16], h800: [16, 16] });
}

describe('placement', () => {
  it.each([
    { name: 'best fit: the fullest node that still fits', gpus: 2, busy: [['h100-000', 5]], want: ['h100-000'] },
    { name: 'a whole node when nothing is fragmented', gpus: 8, busy: [['h100-000', 1]], want: ['h100-001'] },
    { name: 'ties broken by node order', gpus: 4, busy: [], want: ['h100-000'] },
  ] as { name: string; gpus: number; busy: [string, number][]; want: string[] }[])('$name', ({ gpus, busy, want }) => {
    const h = new Harness().addNodes('h100', 2).addTenant('a', { h100: [16, 16] });
    for (const [node, n] of busy) h.run('a', n, [node]);
    const id = h.submit('a', gpus, { type: 'h100' });
    h.pass();
    expect(h.started(id)?.placement.map((p) => p.nodeId)).toEqual(want);
    expect(h.started(id)?.placement[0]?.gpuIndices).toHaveLength(gpus);
  });

  it('gives free GPU indices only, never one a running job holds', () => {
    const h = new Harness().addNodes('h100', 1).addTenant('a', { h100: [8, 8] });
    h.run('a', 3, ['h100-000']);
    const id = h.submit('a', 5, { type: 'h100' });
    h.pass();
    expect(h.started(id)?.placement[0]?.gpuIndices).toEqual([3, 4, 5, 6, 7]);
  });

  it.each([
    { name: 'tightest single leaf that holds the job', leaves: [2, 3], gpus: 16, wantLeaves: ['L0'] },
    { name: 'the other leaf when the tight one is too small', leaves: [2, 3], gpus: 24, wantLeaves: ['L1'] },
    { name: 'fewest leaves when none holds it alone', leaves: [1, 2, 2], gpus: 32, wantLeaves: ['L1', 'L2'] },
  ])('multi-node: $name', ({ leaves, gpus, wantLeaves }) => {
    const h = new Harness().addTenant('a', { h100: [512, 512] });
    leaves.forEach((n, l) => {
      for (let i = 0; i < n; i++) h.addNode(`n${l}${i}`, 'h100', { leaf: `L${l}` });
    });
    const id = h.submit('a', gpus, { type: 'h100' });
    h.pass();
    const s = h.started(id)!;
    expect(s.placement).toHaveLength(gpus / 8);
    expect(s.placement.every((p) => p.gpuIndices.length === 8)).toBe(true);
    const used = [...new Set(s.placement.map((p) => h.nodes.find((n) => n.id === p.nodeId)!.leafSwitch))].sort();
    expect(used).toEqual(wantLeaves);
  });

  it.each([
    { name: 'drained/down node', opts: { schedulable: false }, gpus: 1 },
    { name: 'unhealthy GPU', opts: { unhealthy: [0, 1, 2, 3, 4, 5, 6, 7] }, gpus: 1 },
  ])('never uses a $name', ({ opts, gpus }) => {
    const h = new Harness().addNode('bad', 'h100', opts).addNode('good', 'h100', { unhealthy: [0] }).addTenant('a', { h100: [16, 16] });
    const ids = [h.submit('a', gpus, { type: 'h100' }), h.submit('a', 6, { type: 'h100' })];
    h.pass();
    for (const id of ids) expect(h.started(id)?.placement[0]?.nodeId).toBe('good');
    expect(h.started(ids[1]!)?.placement[0]?.gpuIndices).not.toContain(0);
  });

  it('a node with a failed GPU is not used as a whole node', () => {
    const h = new Harness().addNode('n0', 'h100', { unhealthy: [3] }).addNode('n1', 'h100').addTenant('a', { h100: [16, 16] });
    const id = h.submit('a', 16, { type: 'h100' });
    h.pass();
    expect(h.reason(id)).toBe('nodes_unavailable');
  });

  it.each([
    { name: 'a typed job gets only that type', type: 'h800', gpus: 8, busyH800: 8, want: null },
    { name: 'multi-node any prefers H100', type: 'any', gpus: 16, busyH800: 0, want: 'h100' },
    { name: 'multi-node any takes H800 when H100 is busy', type: 'any', gpus: 16, busyH100: 1, busyH800: 0, want: 'h800' },
    { name: 'single-node any: best fit across types', type: 'any', gpus: 4, busyH100: 4, busyH800: 0, want: 'h100' },
    { name: 'single-node any: H800 on a tie, keeping H100 whole', type: 'any', gpus: 4, busyH800: 0, want: 'h800' },
  ] as const)('GPU types: $name', (c) => {
    const h = small();
    if ('busyH100' in c && c.busyH100) h.run('a', c.busyH100, ['h100-000']);
    if (c.busyH800) {
      h.run('a', c.busyH800, ['h800-000']);
      h.run('a', c.busyH800, ['h800-001']);
    }
    const id = h.submit('a', c.gpus, { type: c.type });
    h.pass();
    expect(h.started(id)?.gpuModel ?? null).toBe(c.want);
  });
});

describe('explanations', () => {
  it.each([
    { name: 'no node of the type exists', setup: (h: Harness) => h.addNodes('h100', 1), type: 'h800', gpus: 1, reason: 'no_node_of_type' },
    { name: 'all nodes of the type drained', setup: (h: Harness) => h.addNodes('h800', 1, { schedulable: false }), type: 'h800', gpus: 1, reason: 'nodes_unavailable' },
    { name: 'more whole nodes than exist', setup: (h: Harness) => h.addNodes('h800', 1), type: 'h800', gpus: 16, reason: 'nodes_unavailable' },
  ] as const)('$name → $reason', ({ setup, type, gpus, reason }) => {
    const h = new Harness().addTenant('a', { h100: [64, 64], h800: [64, 64] });
    setup(h);
    const id = h.submit('a', gpus, { type });
    h.pass();
    expect(h.reason(id)).toBe(reason);
    expect(h.explanation(id)!.estimatedStartAt).toBeNull();
    expect(h.explanation(id)!.message.length).toBeGreaterThan(20);
  });

  it('every pending job gets a reason, a message and a queue position', () => {
    const h = new Harness().addNodes('h100', 1).addTenant('a', { h100: [8, 8] });
    h.run('a', 8, ['h100-000'], { limitH: 2, startedAgoH: 1 });
    const ids = [h.submit('a', 8), h.submit('a', 4), h.submit('a', 2)];
    h.pass();
    expect(h.plan!.pending.map((p) => p.jobId)).toEqual(ids);
    expect(h.plan!.pending.map((p) => p.queuePosition)).toEqual([1, 2, 3]);
    for (const p of h.plan!.pending) expect(p.message).toMatch(/\w/);
  });
});

describe('quotas', () => {
  it.each([
    { name: 'borrows idle capacity up to its limit', limit: 16, running: 8, gpus: 8, want: 'started' },
    { name: 'not beyond its limit', limit: 12, running: 8, gpus: 8, want: 'over_quota_limit' },
    { name: 'no quota for the type means limit 0', limit: 0, running: 0, gpus: 1, want: 'over_quota_limit' },
  ])('$name', ({ limit, running, gpus, want }) => {
    const h = new Harness().addNodes('h100', 4).addTenant('a', { h100: [4, limit] });
    if (running) h.run('a', running, ['h100-000']);
    const id = h.submit('a', gpus, { type: 'h100' });
    h.pass();
    expect(h.reason(id)).toBe(want);
    if (want === 'over_quota_limit') expect(h.explanation(id)!.estimatedStartAt).toBeNull();
  });

  it("the over-limit sentence names this pass's figures, for each tenant and kind of job", () => {
    // (Sentences are kept between passes while their figures hold: a moved figure must show.)
    const h = new Harness().addNodes('h100', 2).addNodes('h800', 2).addTenant('a', { h100: [0, 12], h800: [0, 8] }).addTenant('b', { h100: [0, 12], h800: [0, 8] });
    for (const t of ['a', 'b']) {
      h.run(t, 4, ['h100-000']);
      h.run(t, 4, ['h800-000']);
    }
    const of = (id: string) => /\((.*)\)/.exec(h.explanation(id)!.message)?.[1];
    const [a100, aAny, b100] = [h.submit('a', 10, { type: 'h100' }), h.submit('a', 10, { type: 'any' }), h.submit('b', 10, { type: 'h100' })];
    h.pass();
    expect([h.reason(a100), h.reason(aAny), h.reason(b100)]).toEqual(['over_quota_limit', 'over_quota_limit', 'over_quota_limit']);
    expect(of(a100)).toBe('4 of 12 H100 GPUs in use or claimed');
    expect(of(aAny)).toBe('4 of 12 H100 GPUs in use or claimed, 4 of 8 H800 GPUs in use or claimed');
    expect(h.explanation(b100)!.message).toMatch(/^Tenant b is at its quota limit \(4 of 12 H100/);
    h.run('a', 2, ['h100-001']);
    h.pass();
    expect(of(a100)).toBe('6 of 12 H100 GPUs in use or claimed');
    expect(of(aAny)).toBe('6 of 12 H100 GPUs in use or claimed, 4 of 8 H800 GPUs in use or claimed');
    expect(of(b100)).toBe('4 of 12 H100 GPUs in use or claimed');
  });

  it('the limit counts jobs started earlier in the same pass', () => {
    const h = new Harness().addNodes('h100', 4).addTenant('a', { h100: [0, 8] });
    const [x, y] = [h.submit('a', 8), h.submit('a', 1)];
    h.pass();
    expect([h.reason(x), h.reason(y)]).toEqual(['started', 'over_quota_limit']);
  });
});

describe('reclaim of guaranteed capacity', () => {
  /** Two H100 nodes; a: guaranteed 8, b: guaranteed 8, both limit 16; b fills both nodes. */
  function contested(): Harness {
    return new Harness().addNodes('h100', 2).addTenant('a', { h100: [8, 16] }).addTenant('b', { h100: [8, 16] });
  }

  it('preempts a minimal set of borrowed jobs: lowest priority, then most recently started', () => {
    const h = contested();
    h.run('b', 8, ['h100-000'], { id: 'b-own', startedAgoH: 5 });
    h.run('b', 4, ['h100-001'], { id: 'b-old', startedAgoH: 3, priority: 2 });
    h.run('b', 2, ['h100-001'], { id: 'b-new', startedAgoH: 2 });
    h.run('b', 2, ['h100-001'], { id: 'b-low', startedAgoH: 1, priority: 0 });
    const id = h.submit('a', 4, { type: 'h100' });
    h.pass();
    expect(h.preempted()).toEqual(['b-low', 'b-new']);
    expect(h.plan!.preemptions.every((p) => p.forJobId === id)).toBe(true);
    expect(h.reason(id)).toBe('waiting_for_reclaim');
    expect(h.explanation(id)!.estimatedStartAt).toBe(h.now + h.config.preemptGraceSeconds * 1000);
  });

  it('one larger victim beats two smaller ones', () => {
    const h = contested();
    h.run('b', 8, ['h100-000'], { id: 'b-own', startedAgoH: 5 });
    h.run('b', 4, ['h100-001'], { id: 'b-4', startedAgoH: 3 });
    h.run('b', 2, ['h100-001'], { id: 'b-2a', startedAgoH: 2 });
    h.run('b', 2, ['h100-001'], { id: 'b-2b', startedAgoH: 2 });
    h.submit('a', 4, { type: 'h100' });
    h.pass();
    expect(h.preempted()).toEqual(['b-4']);
  });

  it.each([
    { name: 'jobs within their own guarantee', guaranteedB: 16, agoH: 2, stopping: false, preemption: true, want: [] as string[] },
    { name: 'jobs younger than the minimum runtime', guaranteedB: 8, agoH: 0.05, stopping: false, preemption: true, want: [] },
    { name: 'anything when preemption is off', guaranteedB: 8, agoH: 2, stopping: false, preemption: false, want: [] },
    { name: '(control) borrowed, old enough', guaranteedB: 8, agoH: 2, stopping: false, preemption: true, want: ['b2'] },
  ])('never preempts $name', ({ guaranteedB, agoH, preemption, want }) => {
    const h = new Harness().addNodes('h100', 2).addTenant('a', { h100: [0, 16] }).addTenant('b', { h100: [guaranteedB, 16] });
    h.tenants[0] = { ...h.tenants[0]!, quotas: { h100: { guaranteed: 8, limit: 16 } } };
    h.config = { ...h.config, preemption };
    h.run('b', 8, ['h100-000'], { id: 'b1', startedAgoH: 5 });
    h.run('b', 8, ['h100-001'], { id: 'b2', startedAgoH: agoH });
    const id = h.submit('a', 8, { type: 'h100' });
    h.pass();
    expect(h.preempted()).toEqual(want);
    expect(h.reason(id)).toBe(want.length ? 'waiting_for_reclaim' : 'waiting_for_resources');
  });

  it('does not preempt again while earlier victims are still stopping', () => {
    const h = contested();
    h.run('b', 8, ['h100-000'], { id: 'b1', startedAgoH: 5 });
    h.run('b', 8, ['h100-001'], { id: 'b2', startedAgoH: 2, stopping: true });
    const id = h.submit('a', 8, { type: 'h100' });
    h.pass();
    expect(h.preempted()).toEqual([]);
    expect(h.reason(id)).toBe('waiting_for_reclaim');
  });

  it('a tenant above its guarantee does not reclaim; it waits like anyone else', () => {
    const h = contested();
    h.run('a', 8, ['h100-000'], { startedAgoH: 5 });
    h.run('b', 8, ['h100-001'], { startedAgoH: 2 });
    const id = h.submit('a', 1, { type: 'h100' });
    h.pass();
    expect(h.preempted()).toEqual([]);
    expect(h.reason(id)).not.toBe('waiting_for_reclaim');
  });

  // Anti-starvation protection (a borrowed job that started after waiting past the threshold is
  // not reclaimed) only within the capacity no tenant is guaranteed, earliest start first: a
  // guarantee stays available whatever is protected.
  it.each([
    { name: 'the earliest starved start fits in the 8 unguaranteed GPUs: it is kept, the later one goes', nodes: 3, earlyWaitedH: 5, want: ['b-late'] },
    { name: 'the early job did not starve: lowest priority goes first as usual', nodes: 3, earlyWaitedH: 1, want: ['b-early'] },
    { name: 'no unguaranteed capacity: nothing is protected', nodes: 2, earlyWaitedH: 5, want: ['b-early'] },
  ])('starved jobs are protected within unguaranteed capacity: $name', ({ nodes, earlyWaitedH, want }) => {
    const h = new Harness().addNodes('h100', nodes).addTenant('a', { h100: [8, 24] }).addTenant('b', { h100: [8, 24] });
    h.run('b', 8, ['h100-000'], { id: 'b-own', startedAgoH: 9 });
    h.run('b', 8, ['h100-001'], { id: 'b-early', startedAgoH: 3, waitedH: earlyWaitedH, priority: 0 });
    if (nodes > 2) h.run('b', 8, ['h100-002'], { id: 'b-late', startedAgoH: 2, waitedH: 5 });
    const id = h.submit('a', 8, { type: 'h100' });
    h.pass();
    expect(h.preempted()).toEqual(want);
    expect(h.reason(id)).toBe('waiting_for_reclaim');
  });

  it('multi-node: clears whole nodes of borrowed jobs', () => {
    const h = new Harness().addNodes('h100', 4).addTenant('a', { h100: [16, 32] }).addTenant('b', { h100: [16, 32] });
    h.run('b', 16, ['h100-000', 'h100-001'], { id: 'b-own', startedAgoH: 9 });
    h.run('b', 8, ['h100-002'], { id: 'b3', startedAgoH: 3 });
    h.run('b', 4, ['h100-003'], { id: 'b4a', startedAgoH: 2 });
    h.run('b', 4, ['h100-003'], { id: 'b4b', startedAgoH: 1 });
    h.submit('a', 16, { type: 'h100' });
    h.pass();
    expect(h.preempted()).toEqual(['b3', 'b4a', 'b4b']);
  });
});

describe('fair share', () => {
  function oneSlot(): Harness {
    return new Harness().addNodes('h100', 1).addNodes('h800', 0);
  }
  it.each([
    { name: 'lower decayed usage first', a: { usage: 100 * HOUR }, b: { usage: 10 * HOUR }, first: 'b' },
    { name: 'usage is divided by weight', a: { usage: 100 * HOUR, weight: 20 }, b: { usage: 10 * HOUR }, first: 'a' },
    { name: 'committed GPU time of running jobs counts', a: { usage: 0, running: true }, b: { usage: 1 * HOUR }, first: 'b' },
    { name: 'ties by tenant id', a: { usage: 0 }, b: { usage: 0 }, first: 'a' },
  ])('$name', ({ a, b, first }) => {
    const h = oneSlot()
      .addTenant('a', { h100: [0, 8] }, a)
      .addTenant('b', { h100: [0, 8] }, b);
    h.addNodes('h100', 1);
    if ('running' in a) h.run('a', 1, ['h100-001'], { limitH: 10 });
    const ja = h.submit('a', 8, { type: 'h100' });
    const jb = h.submit('b', 8, { type: 'h100' });
    h.pass();
    expect(h.started(first === 'a' ? ja : jb)).toBeDefined();
  });

  it('within a tenant: priority class, then submission time', () => {
    const h = oneSlot().addTenant('a', { h100: [0, 8] });
    const old = h.submit('a', 8, { at: h.now - 5000 });
    const young = h.submit('a', 8, { at: h.now - 1000 });
    const high = h.submit('a', 8, { at: h.now - 10, priority: 2 });
    h.pass();
    expect(h.started(high)).toBeDefined();
    expect(h.plan!.pending.map((p) => p.jobId)).toEqual([old, young]);
  });

  it('a job within its tenant\'s guarantee ranks before borrowers with lower usage', () => {
    const h = oneSlot()
      .addTenant('a', { h100: [8, 8] }, { usage: 1000 * HOUR })
      .addTenant('b', { h100: [0, 8] }, { usage: 0 });
    const jb = h.submit('b', 8);
    const ja = h.submit('a', 8);
    h.pass();
    expect(h.started(ja)).toBeDefined();
    expect(h.reason(jb)).not.toBe('started');
  });

  it('tenants alternate within one pass (ranked jobs are charged)', () => {
    const h = new Harness().addNodes('h100', 4).addTenant('a', { h100: [0, 32] }).addTenant('b', { h100: [0, 32] }, { usage: 1 });
    const as = [h.submit('a', 8, { limitH: 1 }), h.submit('a', 8, { limitH: 1 }), h.submit('a', 8, { limitH: 1 })];
    const bs = [h.submit('b', 8, { limitH: 1 }), h.submit('b', 8, { limitH: 1 }), h.submit('b', 8, { limitH: 1 })];
    h.pass();
    expect(h.plan!.starts.map((s) => s.jobId).sort()).toEqual([as[0]!, as[1]!, bs[0]!, bs[1]!].sort());
  });
});

describe('backfill', () => {
  /** One node: 4 GPUs busy for 2 more hours; a 8-GPU job is blocked at the head. */
  function blocked(depth = 4): { h: Harness; big: string } {
    const h = new Harness().addNodes('h100', 1).addTenant('a', { h100: [0, 64] });
    h.config = { ...h.config, reservationDepth: depth };
    h.run('a', 4, ['h100-000'], { startedAgoH: 1, limitH: 3 });
    const big = h.submit('a', 8, { type: 'h100', priority: 2 });
    return { h, big };
  }

  it.each([
    { name: 'a short job that ends before the reservation starts', limitH: 1, depth: 4, want: 'started' },
    { name: 'a long job that would delay it', limitH: 3, depth: 4, want: 'reservation_for_larger_job' },
    { name: 'without reservations (depth 0) anything that fits starts', limitH: 3, depth: 0, want: 'started' },
  ])('$name', ({ limitH, depth, want }) => {
    const { h, big } = blocked(depth);
    const small = h.submit('a', 2, { type: 'h100', limitH });
    h.pass();
    expect(h.reason(small)).toBe(want);
    if (depth > 0) {
      expect(h.reason(big)).toBe('waiting_for_resources');
      expect(h.explanation(big)!.estimatedStartAt).toBe(h.now + 2 * HOUR * 1000);
      expect(h.plan!.reservations![0]!.jobId).toBe(big);
    }
  });

  it('the reservation depth bounds how many blocked jobs get reservations', () => {
    const h = new Harness().addNodes('h100', 2).addTenant('a', { h100: [0, 64] });
    h.config = { ...h.config, reservationDepth: 2 };
    h.run('a', 8, ['h100-000'], { limitH: 2 });
    h.run('a', 8, ['h100-001'], { limitH: 3 });
    const ids = [h.submit('a', 8), h.submit('a', 8), h.submit('a', 8)];
    h.pass();
    expect(h.plan!.reservations!.map((r) => r.jobId)).toEqual(ids.slice(0, 2));
    const est = ids.map((id) => h.explanation(id)!.estimatedStartAt!);
    expect(est[0]!).toBe(h.now + 1 * HOUR * 1000);
    expect(est[1]!).toBe(h.now + 2 * HOUR * 1000);
    expect(est[2]!).toBeGreaterThanOrEqual(est[1]!);
    expect(h.reason(ids[1]!)).toBe('behind_higher_ranked');
  });

  it('multi-node reservation: earliest time enough whole nodes are free', () => {
    const h = new Harness().addNodes('h100', 3).addTenant('a', { h100: [0, 64] });
    h.run('a', 8, ['h100-000'], { limitH: 2, startedAgoH: 1 });
    h.run('a', 8, ['h100-001'], { limitH: 5, startedAgoH: 1 });
    h.run('a', 2, ['h100-002'], { limitH: 3, startedAgoH: 1 });
    const big = h.submit('a', 16, { type: 'h100' });
    const fill = h.submit('a', 1, { type: 'h100', limitH: 1 });
    const longFill = h.submit('a', 5, { type: 'h100', limitH: 8 });
    h.pass();
    expect(h.explanation(big)!.estimatedStartAt).toBe(h.now + 2 * HOUR * 1000);
    expect(h.plan!.reservations![0]!.nodeIds).toEqual(['h100-000', 'h100-002']);
    expect(h.reason(fill)).toBe('started');
    expect(h.reason(longFill)).toBe('reservation_for_larger_job');
  });
});

describe('policy variants', () => {
  it('fifo: the first blocked job blocks everything behind it', () => {
    const h = new Harness().addNodes('h100', 1).addTenant('a', { h100: [0, 0] });
    h.config = { ...h.config, mode: 'fifo', preemption: false };
    h.run('a', 4, ['h100-000']);
    const big = h.submit('a', 8, { at: h.now - 2000 });
    const small = h.submit('a', 1, { at: h.now - 1000, limitH: 0.1 });
    h.pass();
    expect(h.reason(big)).toBe('waiting_for_resources');
    expect(h.reason(small)).toBe('behind_higher_ranked');
  });

  it('slurm: priority order with backfill and no quotas', () => {
    const h = new Harness().addNodes('h100', 1).addTenant('a', { h100: [0, 0] });
    h.config = { ...h.config, mode: 'slurm', preemption: false };
    h.run('a', 4, ['h100-000'], { limitH: 2 });
    const big = h.submit('a', 8, { at: h.now - 1000, priority: 2 });
    const small = h.submit('a', 1, { at: h.now - 2000, limitH: 0.5 });
    h.pass();
    expect(h.reason(big)).toBe('waiting_for_resources');
    expect(h.reason(small)).toBe('started');
  });
});

describe('limit backfill within a tenant (age decides the room under the limit)', () => {
  // Tenant a may hold 12 H100 GPUs and holds 8: 4 until now+2h, 4 until now+5h. Its 8-GPU job
  // waits; starving = pending longer than the starvation threshold (4 h).
  it.each([
    {
      name: 'a starving job over the limit gets a reservation from when its tenant leaves room; later jobs that outlast it wait, shorter ones backfill',
      bigAgoH: 5,
      want: { big: 'over_quota_limit', bigAtH: 2, longSmall: 'reservation_for_larger_job', shortSmall: 'started' },
    },
    {
      name: 'a job over the limit that is not starving holds nothing: later jobs of the tenant start within the limit',
      bigAgoH: 1,
      want: { big: 'over_quota_limit', bigAtH: null, longSmall: 'started', shortSmall: 'started' },
    },
  ])('$name', ({ bigAgoH, want }) => {
    const h = new Harness().addNodes('h100', 2).addTenant('a', { h100: [0, 12] });
    h.run('a', 4, ['h100-000'], { limitH: 3, startedAgoH: 1 });
    h.run('a', 4, ['h100-001'], { limitH: 6, startedAgoH: 1 });
    const big = h.submit('a', 8, { type: 'h100', at: h.now - bigAgoH * HOUR * 1000, limitH: 4 });
    const longSmall = h.submit('a', 2, { type: 'h100', at: h.now - 0.9 * HOUR * 1000, limitH: 6 });
    const shortSmall = h.submit('a', 2, { type: 'h100', at: h.now - 0.5 * HOUR * 1000, limitH: 1 });
    h.pass();
    expect(h.reason(big)).toBe(want.big);
    expect(h.explanation(big)!.estimatedStartAt).toBe(want.bigAtH === null ? null : h.now + want.bigAtH * HOUR * 1000);
    expect(h.reason(longSmall)).toBe(want.longSmall);
    expect(h.reason(shortSmall)).toBe(want.shortSmall);
    if (want.bigAtH !== null) {
      expect(h.plan!.reservations!.find((r) => r.jobId === big)?.nodeIds).toEqual(['h100-000']);
      expect(h.explanation(longSmall)!.message).toContain(big);
    }
  });

  it('the held sentence names the job holding the room in this pass', () => {
    const held = (bigId: string, bigLimitH: number) => {
      const h = new Harness().addNodes('h100', 2).addTenant('a', { h100: [0, 12] });
      h.run('a', 4, ['h100-000'], { limitH: 3, startedAgoH: 1 });
      h.run('a', 4, ['h100-001'], { limitH: 6, startedAgoH: 1 });
      h.submit('a', 8, { id: bigId, type: 'h100', at: h.now - 5 * HOUR * 1000, limitH: bigLimitH });
      const small = h.submit('a', 2, { type: 'h100', at: h.now - 0.9 * HOUR * 1000, limitH: 6 });
      h.pass();
      expect(h.reason(small)).toBe('reservation_for_larger_job');
      return h.explanation(small)!.message;
    };
    expect(held('big-1', 4)).toContain('older job big-1,');
    expect(held('big-2', 4)).toContain('older job big-2,');
  });

  it('two starving jobs of one tenant each hold their room; the younger is reserved after the older', () => {
    const h = new Harness().addNodes('h100', 2).addTenant('a', { h100: [0, 12] });
    h.run('a', 4, ['h100-000'], { limitH: 3, startedAgoH: 1 });
    h.run('a', 4, ['h100-001'], { limitH: 6, startedAgoH: 1 });
    const older = h.submit('a', 8, { type: 'h100', at: h.now - 6 * HOUR * 1000, limitH: 4 });
    const younger = h.submit('a', 8, { type: 'h100', at: h.now - 5 * HOUR * 1000, limitH: 4 });
    const small = h.submit('a', 2, { type: 'h100', at: h.now - 0.5 * HOUR * 1000, limitH: 6 });
    h.pass();
    const at = (id: string) => h.explanation(id)!.estimatedStartAt!;
    expect(at(older)).toBe(h.now + 2 * HOUR * 1000);
    // The younger one fits under the limit only once the older one ends (12 < 8 + 8).
    expect(at(younger)).toBe(at(older) + 4 * HOUR * 1000);
    expect(h.reason(small)).toBe('reservation_for_larger_job');
  });
});

describe('starvation counts from when a job last entered the queue', () => {
  // One free node; x has used far more than y, so fair share puts y first unless x's job is
  // starving (pending past the 4 h threshold), which ranks it ahead of everything else.
  it.each([
    { name: 'pending 10 h since submission: starving, it goes first', queuedAgoH: undefined, want: 'x-job' },
    { name: 'requeued 1 h ago after a preemption: not starving, fair share decides', queuedAgoH: 1, want: 'y-job' },
    { name: 'requeued 5 h ago: starving again', queuedAgoH: 5, want: 'x-job' },
  ])('$name', ({ queuedAgoH, want }) => {
    const h = new Harness().addNodes('h100', 1).addTenant('x', { h100: [0, 8] }, { usage: 1e9 }).addTenant('y', { h100: [0, 8] });
    h.submit('x', 8, { id: 'x-job', at: h.now - 10 * HOUR * 1000, queuedAgoH });
    h.submit('y', 8, { id: 'y-job', at: h.now - 2 * HOUR * 1000 });
    h.pass();
    expect(h.plan!.starts.map((s) => s.jobId)).toEqual([want]);
  });
});

describe('aging: a starving job ranks within its tenant with at least normal priority', () => {
  // One free node, one tenant; a low-priority and a normal job of 8 GPUs each. Without aging the
  // normal job always goes first, so during a backlog that never drains a low-priority job
  // never becomes its tenant's next job and anti-starvation never reaches it.
  const LOW = 0;
  const NORMAL = 1;
  const HIGH = 2;
  it.each([
    { name: 'low, pending 3 h (not starving): the younger normal job goes first', low: 3, other: 1, otherPrio: NORMAL, want: 'other' },
    { name: 'low, pending 5 h (starving): it queues by age with normal work and goes first', low: 5, other: 1, otherPrio: NORMAL, want: 'low' },
    { name: 'both starving: the older goes first, whatever its class', low: 6, other: 7, otherPrio: NORMAL, want: 'other' },
    { name: 'a high-priority job still goes first: aging lifts to normal, not above', low: 10, other: 0.5, otherPrio: HIGH, want: 'other' },
    { name: 'aging off (floor 0): priority decides, as without it', low: 5, other: 1, otherPrio: NORMAL, floor: 0, want: 'other' },
  ])('$name', ({ low, other, otherPrio, floor, want }) => {
    const h = new Harness().addNodes('h100', 1).addTenant('a', { h100: [8, 8] });
    if (floor !== undefined) h.config = { ...h.config, starvingPriorityFloor: floor };
    h.submit('a', 8, { id: 'low', priority: LOW, at: h.now - low * HOUR * 1000 });
    h.submit('a', 8, { id: 'other', priority: otherPrio, at: h.now - other * HOUR * 1000 });
    h.pass();
    expect(h.plan!.starts.map((s) => s.jobId)).toEqual([want]);
  });

  it('counts from the requeue: a low-priority job preempted 1 h ago waits behind normal work again', () => {
    const h = new Harness().addNodes('h100', 1).addTenant('a', { h100: [8, 8] });
    h.submit('a', 8, { id: 'low', priority: LOW, at: h.now - 10 * HOUR * 1000, queuedAgoH: 1 });
    h.submit('a', 8, { id: 'normal', priority: NORMAL, at: h.now - 2 * HOUR * 1000 });
    h.pass();
    expect(h.plan!.starts.map((s) => s.jobId)).toEqual(['normal']);
  });

  it('the baselines rank by the priority as given (slurm keeps a starving low job behind)', () => {
    const h = new Harness().addNodes('h100', 1).addTenant('a', { h100: [8, 8] });
    h.config = { ...h.config, mode: 'slurm', preemption: false };
    h.submit('a', 8, { id: 'low', priority: LOW, at: h.now - 10 * HOUR * 1000 });
    h.submit('a', 8, { id: 'normal', priority: NORMAL, at: h.now - 1 * HOUR * 1000 });
    h.pass();
    expect(h.plan!.starts.map((s) => s.jobId)).toEqual(['normal']);
  });
});

describe('reclaim without preemption cycles', () => {
  it('a job within its guarantee ranks ahead of the borrowers it reclaims from, even behind a starving head too large for the guarantee', () => {
    // a (guaranteed 8) waits with a starving 16-GPU head and a 1-GPU job; b borrows both nodes
    // and has more work queued at a lower fair-share key. The 1-GPU job reclaims. Ranked after
    // b's queued jobs (the head used to be charged to the guarantee), the GPUs it freed went to
    // b's next job in the following pass, and it reclaimed again after the minimum runtime.
    const h = new Harness().addNodes('h100', 2).addTenant('a', { h100: [8, 16] }, { usage: 1e9 }).addTenant('b', { h100: [0, 16] });
    h.run('b', 8, ['h100-000'], { id: 'b-run0', startedAgoH: 2 });
    h.run('b', 8, ['h100-001'], { id: 'b-run1', startedAgoH: 2 });
    h.submit('a', 16, { id: 'a-head', at: h.now - 10 * HOUR * 1000 });
    const small = h.submit('a', 1, { id: 'a-small', at: h.now - 1 * HOUR * 1000 });
    const bNext = h.submit('b', 1, { id: 'b-next', at: h.now - 0.5 * HOUR * 1000 });
    h.pass();
    expect(h.plan!.preemptions.map((p) => p.forJobId)).toEqual([small]);
    expect(h.explanation(small)!.queuePosition).toBeLessThan(h.explanation(bNext)!.queuePosition);
  });

  it.each([
    { name: 'a job ending before the reservation starts reclaims the node', limitH: 5, preempts: true },
    { name: 'a job running past it does not: it could not keep the GPUs', limitH: 20, preempts: false },
  ])('a larger job reserved the node later: $name', ({ limitH, preempts }) => {
    // c borrows both nodes; its starving 16-GPU job holds both from when the second frees (10 h).
    // a's 8-GPU job is within a's guarantee. Preempting c's 2-h job on node 0 frees GPUs that c's
    // reservation takes back at 10 h: a long job would be refused them in the next pass.
    const h = new Harness().addNodes('h100', 2).addTenant('a', { h100: [8, 8] }).addTenant('c', { h100: [0, 16] });
    h.run('c', 8, ['h100-000'], { id: 'c-short', startedAgoH: 1, limitH: 3 });
    h.run('c', 8, ['h100-001'], { id: 'c-long', startedAgoH: 1, limitH: 11 });
    h.submit('c', 16, { id: 'c-big', at: h.now - 10 * HOUR * 1000, limitH: 5 });
    const job = h.submit('a', 8, { id: 'a-job', at: h.now - 0.1 * HOUR * 1000, limitH });
    h.pass();
    expect(h.plan!.reservations!.find((r) => r.jobId === 'c-big')!.startAt).toBe(h.now + 10 * HOUR * 1000);
    expect(h.plan!.preemptions.map((p) => p.jobId)).toEqual(preempts ? ['c-short'] : []);
    if (preempts) expect(h.reason(job)).toBe('waiting_for_reclaim');
  });

  it("a tenant's multi-node job fills its guarantee before its single-node jobs, so a reclaim takes a small job", () => {
    // a (guaranteed 32) runs two 8-GPU jobs and, started later, a 32-GPU job: 48 GPUs, 16 borrowed.
    // b needs 8 within its guarantee. With the oldest jobs filling the guarantee the 32-GPU job
    // was the borrowed one and the victim: four nodes stopped to free one.
    const h = new Harness().addNodes('h100', 6).addTenant('a', { h100: [32, 48] }).addTenant('b', { h100: [8, 8] });
    h.run('a', 8, ['h100-000'], { id: 'a-small0', startedAgoH: 3 });
    h.run('a', 8, ['h100-001'], { id: 'a-small1', startedAgoH: 3 });
    h.run('a', 32, ['h100-002', 'h100-003', 'h100-004', 'h100-005'], { id: 'a-gang', startedAgoH: 1 });
    const job = h.submit('b', 8, { id: 'b-job' });
    h.pass();
    expect(h.plan!.preemptions).toHaveLength(1);
    expect(h.plan!.preemptions[0]!).toMatchObject({ forJobId: job });
    expect(['a-small0', 'a-small1']).toContain(h.plan!.preemptions[0]!.jobId);
  });
});

describe('an `any` job starts on a type where it is within its guarantee', () => {
  // One free H100 and one free H800 node. A single-node `any` job prefers H800 (to keep H100
  // whole), but on a type where its tenant is at its guarantee it would be borrowing, and the
  // first victim of the reclaim it was ranked ahead of.
  it.each([
    { name: 'guarantee on H100 only: H100', quotas: { h100: [8, 8], h800: [0, 8] }, want: 'h100' },
    { name: 'guarantee on H800 only: H800', quotas: { h100: [0, 8], h800: [8, 8] }, want: 'h800' },
    { name: 'guarantee on both: the preferred H800', quotas: { h100: [8, 8], h800: [8, 8] }, want: 'h800' },
    { name: 'guarantee on neither: the preferred H800', quotas: { h100: [0, 8], h800: [0, 8] }, want: 'h800' },
  ] as { name: string; quotas: Record<'h100' | 'h800', [number, number]>; want: string }[])('$name', ({ quotas, want }) => {
    const h = new Harness().addNodes('h100', 1).addNodes('h800', 1).addTenant('a', quotas);
    const id = h.submit('a', 2);
    h.pass();
    expect(h.started(id)?.gpuModel).toBe(want);
  });
});
