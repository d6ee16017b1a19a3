import { schedule, type PendingJob, type Plan, type RunningJob, type Snapshot } from '@nuri/scheduling';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { eightGpuNode as node, smallFleet } from '@nuri/scheduling/testing/harness';
import { ExpressState, type PendingSource } from './express';

const T0 = Date.UTC(2026, 0, 1);
const HOUR = 3600;
const CONFIG = { reservationDepth: 3, minRuntimeBeforePreemptSeconds: 600, preemptGraceSeconds: 60, preemption: true };

const job = (id: string, tenantId: string, gpus: number, at: number, gpuType: PendingJob['gpuType'] = 'h100', hours = 1): PendingJob => ({
  id,
  tenantId,
  gpus,
  gpuType,
  priority: 1,
  submittedAt: at,
  timeLimitSeconds: hours * HOUR,
});

/** The queue as express plans read it (see PendingSource): whatever it reads, from `pending`. */
const source = (pending: readonly PendingJob[]): PendingSource => ({
  ofTenants: (tenants) => pending.filter((j) => tenants.has(j.tenantId)),
  get: (id) => pending.find((j) => j.id === id),
});

/** The state after a full pass: its starts running, its victims stopping, its started jobs out of the queue. */
function after(s: Snapshot, plan: Plan, now: number, newcomers: PendingJob[]): Snapshot {
  const started = new Set(plan.starts.map((x) => x.jobId));
  const victims = new Set(plan.preemptions.map((p) => p.jobId));
  const byId = new Map(s.pending.map((j) => [j.id, j]));
  const running: RunningJob[] = s.running.map((r) => (victims.has(r.id) ? { ...r, stopping: true } : r));
  for (const st of plan.starts) {
    const j = byId.get(st.jobId)!;
    running.push({ id: j.id, tenantId: j.tenantId, gpus: j.gpus, gpuModel: st.gpuModel, priority: j.priority, submittedAt: j.submittedAt, startedAt: s.now, timeLimitSeconds: j.timeLimitSeconds, placement: st.placement, stopping: false });
  }
  return { ...s, now, running, pending: [...s.pending.filter((j) => !started.has(j.id)), ...newcomers] };
}

/** Worlds this property found express starts in that the full pass would not make (each fixed since). */
const FOUND: unknown[] = [
  // x1 (priority 1) ranks ahead of its tenant t2's queued jobs and takes their room under the
  // limit; they lose their reservations, and the depth goes, in the full pass, to t1's 16-GPU
  // job, whose reservation holds x1.
  '{"h100":4,"h800":3,"busy":[{"tenant":0,"node":0,"gpus":1,"hours":1},{"tenant":0,"node":4,"gpus":1,"hours":1},{"tenant":0,"node":2,"gpus":1,"hours":2},{"tenant":0,"node":1,"gpus":1,"hours":3}],"queued":[{"tenant":0,"gpus":8,"type":"h800","hours":6,"prio":0},{"tenant":0,"gpus":16,"type":"h100","hours":1,"prio":0},{"tenant":1,"gpus":16,"type":"any","hours":1,"prio":0},{"tenant":2,"gpus":8,"type":"h100","hours":1,"prio":0},{"tenant":2,"gpus":16,"type":"h100","hours":3,"prio":1}],"fresh":[{"tenant":2,"gpus":1,"type":"h100","hours":3,"prio":0},{"tenant":2,"gpus":8,"type":"h100","hours":1,"prio":1}],"guarantees":[9,0,1],"extra":[10,16,15],"cancelled":15}',
  // x0 fits t0's guarantee and ranks first; charged for it, t0's kept q03 falls behind t1's
  // q01, which was left out of the express plan and whose reservation holds x1.
  '{"h100":1,"h800":2,"busy":[{"tenant":1,"node":2,"gpus":1,"hours":1},{"tenant":1,"node":4,"gpus":8,"hours":2},{"tenant":0,"node":0,"gpus":1,"hours":1},{"tenant":0,"node":0,"gpus":4,"hours":1}],"queued":[{"tenant":2,"gpus":8,"type":"h800","hours":3,"prio":0},{"tenant":1,"gpus":8,"type":"h800","hours":1,"prio":0},{"tenant":0,"gpus":4,"type":"h100","hours":1,"prio":0},{"tenant":0,"gpus":4,"type":"h100","hours":1,"prio":0}],"fresh":[{"tenant":0,"gpus":2,"type":"any","hours":3,"prio":0},{"tenant":0,"gpus":1,"type":"h800","hours":4,"prio":0}],"guarantees":[2,9,0],"extra":[7,8,8],"cancelled":15}',
  // The pass started t0's q01, ranked after its q02; now running, it leaves q02 outside t0's
  // guarantee, and t0's q03 (left out of the express plan) fits it, ranks first and takes the
  // GPUs express gave x0.
  '{"h100":2,"h800":2,"busy":[{"tenant":0,"node":3,"gpus":1,"hours":2},{"tenant":0,"node":6,"gpus":2,"hours":1}],"queued":[{"tenant":0,"gpus":8,"type":"h100","hours":1,"prio":0},{"tenant":0,"gpus":2,"type":"any","hours":1,"prio":0},{"tenant":0,"gpus":8,"type":"h800","hours":1,"prio":1},{"tenant":0,"gpus":4,"type":"h800","hours":2,"prio":0},{"tenant":0,"gpus":8,"type":"h100","hours":1,"prio":1},{"tenant":0,"gpus":8,"type":"h100","hours":1,"prio":1},{"tenant":0,"gpus":1,"type":"h800","hours":2,"prio":2},{"tenant":0,"gpus":1,"type":"h100","hours":1,"prio":0}],"fresh":[{"tenant":1,"gpus":4,"type":"h800","hours":1,"prio":0}],"guarantees":[12,0,0],"extra":[5,4,0],"cancelled":15}',
  // q00, reclaiming for t2's guarantee, is cancelled; in the full pass t2's q01 reclaims
  // instead, and the GPUs it waits for are those express gave x2.
  '{"h100":2,"h800":0,"busy":[{"tenant":0,"node":1,"gpus":4,"hours":1},{"tenant":1,"node":0,"gpus":1,"hours":1}],"queued":[{"tenant":2,"gpus":8,"type":"h100","hours":1,"prio":0},{"tenant":2,"gpus":8,"type":"h100","hours":1,"prio":0}],"fresh":[{"tenant":0,"gpus":2,"type":"h100","hours":1,"prio":0},{"tenant":0,"gpus":1,"type":"h100","hours":1,"prio":0},{"tenant":0,"gpus":2,"type":"h100","hours":1,"prio":0}],"guarantees":[6,0,8],"extra":[3,0,0],"cancelled":0}',
].map((w) => JSON.parse(w as string));

describe('express starts between full passes', () => {
  it('starts a newcomer on free GPUs at once, and never on GPUs a larger job has reserved', () => {
    // Two nodes: n1 half busy for 3 h, n2 busy for 1 h. A 16-GPU job waits for both (reserved from +1 h on n2).
    const s: Snapshot = {
      now: T0,
      config: CONFIG,
      tenants: [
        { id: 'a', name: 'a', weight: 1, decayedUsage: 0, quotas: { h100: { guaranteed: 8, limit: 16 } } },
        { id: 'b', name: 'b', weight: 1, decayedUsage: 0, quotas: { h100: { guaranteed: 8, limit: 16 } } },
      ],
      nodes: [node('n1', 'h100'), node('n2', 'h100')],
      running: [
        { id: 'r1', tenantId: 'a', gpus: 4, gpuModel: 'h100', priority: 1, submittedAt: T0 - HOUR * 1000, startedAt: T0 - HOUR * 1000, timeLimitSeconds: 4 * HOUR, placement: [{ nodeId: 'n1', gpuIndices: [0, 1, 2, 3] }], stopping: false },
        { id: 'r2', tenantId: 'a', gpus: 8, gpuModel: 'h100', priority: 1, submittedAt: T0 - HOUR * 1000, startedAt: T0 - HOUR * 1000, timeLimitSeconds: 2 * HOUR, placement: [{ nodeId: 'n2', gpuIndices: [0, 1, 2, 3, 4, 5, 6, 7] }], stopping: false },
      ],
      pending: [job('big', 'b', 16, T0 - 60_000, 'h100', 2)],
    };
    const plan = schedule(s);
    expect(plan.starts).toEqual([]);
    const express = new ExpressState({ snapshot: s, plan, started: new Set() });
    const now = T0 + 1000;
    // A 1-hour job fits on n1's free GPUs before the reservation (+1 h) and would not delay it... unless it runs past it.
    const short = job('short', 'a', 2, now, 'h100', 0.5);
    const long = job('long', 'a', 2, now, 'h100', 5);
    const p1 = express.plan([short], source([...s.pending, short]), now);
    expect(p1.starts.map((x) => x.jobId)).toEqual(['short']);
    express.started([short], p1.starts, new Set(['short']), now);
    const p2 = express.plan([long], source([...s.pending, long]), now);
    expect(p2.starts).toEqual([]);
    expect(p2.preemptions).toEqual([]);
    expect(express.knows('long')).toBe(true);
    // A full pass that began before 'short' started (its snapshot without it) keeps it held...
    const next = new ExpressState({ snapshot: { ...s, now: T0 + 500 }, plan, started: new Set() }, express);
    const again = job('again', 'a', 4, now, 'h100', 0.5);
    const p3 = next.plan([again], source([...s.pending, again]), now + 10);
    expect(p3.starts).toEqual([]);
    // ...and one that began after it, and does not show it, knows it ended.
    const later = new ExpressState({ snapshot: { ...s, now: now + 5000 }, plan, started: new Set() }, express);
    expect(later.plan([again], source([...s.pending, again]), now + 6000).starts.map((x) => x.jobId)).toEqual(['again']);
  });

  it('knows the arrivals its pass planned and the newcomers it planned, and no other arrival', () => {
    const queued = [job('old', 'a', 8, T0 - 60_000), job('seen', 'a', 8, T0 - 1000)];
    const tenants = [{ id: 'a', name: 'a', weight: 1, decayedUsage: 0, quotas: { h100: { guaranteed: 0, limit: 0 } } }];
    const snap: Snapshot = { now: T0, config: CONFIG, tenants, nodes: [node('n1', 'h100')], running: [], pending: queued };
    // 'late' arrived after the pass read the queue: not in its snapshot, so new to express starts.
    const express = new ExpressState({ snapshot: snap, plan: schedule(snap), started: new Set() }, null, new Set(['seen', 'late']));
    expect(express.knows('seen')).toBe(true);
    expect(express.knows('late')).toBe(false);
    const late = job('late', 'a', 1, T0 + 100);
    expect(express.plan([late], source([...queued, late]), T0 + 200).starts).toEqual([]);
    expect(express.knows('late')).toBe(true);
  });

  it('plans no further than its newcomers: a moved tenant\'s queue ranked after them is not walked', () => {
    const tenants = [
      { id: 'a', name: 'a', weight: 1, decayedUsage: 0, quotas: { h100: { guaranteed: 8, limit: 8 } } },
      { id: 'b', name: 'b', weight: 1, decayedUsage: 1000, quotas: { h100: { guaranteed: 0, limit: 4 } } },
    ];
    // b's first job starts in the pass (b has moved: its whole queue is planned); the 300 after it are over b's limit.
    const queue = Array.from({ length: 301 }, (_, i) => job(`b-${String(i).padStart(3, '0')}`, 'b', 4, T0 - 600_000 + i));
    const s: Snapshot = { now: T0, config: CONFIG, tenants, nodes: [node('n1', 'h100'), node('n2', 'h100')], running: [], pending: queue };
    const plan = schedule(s);
    expect(plan.starts.map((x) => x.jobId)).toEqual(['b-000']);
    const express = new ExpressState({ snapshot: s, plan, started: new Set(['b-000']) });
    const now = T0 + 1000;
    const fresh = job('fresh', 'a', 2, now);
    const pending = [...queue.slice(1), fresh];
    const quick = express.plan([fresh], source(pending), now);
    expect(quick.starts.map((x) => x.jobId)).toEqual(['fresh']);
    // Within a's guarantee it ranks first: nothing after it was planned.
    expect(quick.pending).toEqual([]);
    expect(schedule(after(s, plan, now, [fresh])).pending).toHaveLength(300);
  });

  it('starts no newcomer while a start the pass planned was not committed: the full pass gives its GPUs first', () => {
    const tenants = [
      { id: 'a', name: 'a', weight: 1, decayedUsage: 0, quotas: { h100: { guaranteed: 8, limit: 8 } } },
      // b borrows (no guarantee): its newcomer ranks after c's job, within c's guarantee.
      { id: 'b', name: 'b', weight: 1, decayedUsage: 0, quotas: { h100: { guaranteed: 0, limit: 8 } } },
      { id: 'c', name: 'c', weight: 1, decayedUsage: 0, quotas: { h100: { guaranteed: 8, limit: 8 } } },
    ];
    const queue = [job('a1', 'a', 8, T0 - 2000), job('c1', 'c', 8, T0 - 1000)];
    const s: Snapshot = { now: T0, config: CONFIG, tenants, nodes: [node('n1', 'h100'), node('n2', 'h100')], running: [], pending: queue };
    const plan = schedule(s);
    expect(plan.starts.map((x) => x.jobId)).toEqual(['a1', 'c1']);
    const now = T0 + 1000;
    const x = job('x', 'b', 1, now);
    // c1's start was left for the next pass (over NURI_MAX_STARTS_PER_PASS): its node looks free here,
    // and c started nothing (its queue is not planned with the newcomer's)...
    const partial = new ExpressState({ snapshot: s, plan, started: new Set(['a1']) });
    expect(partial.anyFree()).toBe(true);
    // ...but the full pass on the same state starts c1 there, and x waits.
    const truth = schedule(after(s, { ...plan, starts: plan.starts.slice(0, 1) }, now, [x]));
    expect(truth.starts.map((st) => st.jobId)).toEqual(['c1']);
    expect(partial.plan([x], source([queue[1]!, x]), now).starts).toEqual([]);
    // With every start committed, nothing is free.
    expect(new ExpressState({ snapshot: s, plan, started: new Set(['a1', 'c1']) }).anyFree()).toBe(false);
  });

  it('tells from the free GPUs alone which newcomers cannot start, and then plans nothing', () => {
    const drained = { ...node('d', 'h100'), schedulable: false };
    const sick = { ...node('s', 'h800'), gpus: node('s', 'h800').gpus.map((g) => ({ ...g, healthy: g.index >= 6 })) };
    const nodes = [node('a', 'h100'), node('b', 'h100'), drained, sick];
    const tenants = [
      { id: 't', name: 't', weight: 1, decayedUsage: 0, quotas: { h100: { guaranteed: 64, limit: 64 }, h800: { guaranteed: 64, limit: 64 } } },
      { id: 'u', name: 'u', weight: 1, decayedUsage: 0, quotas: { h100: { guaranteed: 0, limit: 4 } } },
    ];
    const running: RunningJob[] = [
      { id: 'r1', tenantId: 't', gpus: 3, gpuModel: 'h100', priority: 1, submittedAt: T0, startedAt: T0, timeLimitSeconds: HOUR, placement: [{ nodeId: 'a', gpuIndices: [0, 1, 2] }], stopping: false },
      { id: 'r2', tenantId: 'u', gpus: 2, gpuModel: 'h100', priority: 1, submittedAt: T0, startedAt: T0, timeLimitSeconds: HOUR, placement: [{ nodeId: 'a', gpuIndices: [3, 4] }], stopping: true },
    ];
    const s: Snapshot = { now: T0, config: CONFIG, tenants, nodes, running, pending: [] };
    const plan = schedule(s);
    const express = new ExpressState({ snapshot: s, plan, started: new Set() });
    // h100: node a has 3 free, node b 8 (wholly free); the drained node counts for nothing.
    expect(express.mayStart({ gpus: 8, gpuType: 'h100', tenantId: 't' })).toBe(true);
    expect(express.mayStart({ gpus: 16, gpuType: 'h100', tenantId: 't' })).toBe(false);
    // h800: two healthy GPUs on a node that is not whole.
    expect(express.mayStart({ gpus: 2, gpuType: 'h800', tenantId: 't' })).toBe(true);
    expect(express.mayStart({ gpus: 3, gpuType: 'h800', tenantId: 't' })).toBe(false);
    expect(express.mayStart({ gpus: 8, gpuType: 'h800', tenantId: 't' })).toBe(false);
    expect(express.mayStart({ gpus: 3, gpuType: 'any', tenantId: 't' })).toBe(true);
    // Within a tenant's limit only: u may hold 4 H100 GPUs (2 already) and no H800 GPU.
    expect(express.mayStart({ gpus: 2, gpuType: 'h100', tenantId: 'u' })).toBe(true);
    expect(express.mayStart({ gpus: 3, gpuType: 'h100', tenantId: 'u' })).toBe(false);
    expect(express.mayStart({ gpus: 2, gpuType: 'h800', tenantId: 'u' })).toBe(false);
    expect(express.mayStart({ gpus: 2, gpuType: 'any', tenantId: 'u' })).toBe(true);
    // An express start on b takes it: then 8 GPUs fit nowhere, and a plan for them is skipped.
    const big = job('big', 't', 8, T0 + 1000);
    const p1 = express.plan([big], source([big]), T0 + 1000);
    expect(p1.starts.map((x) => x.jobId)).toEqual(['big']);
    express.started([big], p1.starts, new Set(['big']), T0 + 1000);
    expect(express.mayStart({ gpus: 8, gpuType: 'h100', tenantId: 't' })).toBe(false);
    expect(express.mayStart({ gpus: 3, gpuType: 'h100', tenantId: 't' })).toBe(true);
    const again = job('again', 't', 8, T0 + 2000);
    expect(express.plan([again], source([again]), T0 + 2000)).toEqual({ starts: [], preemptions: [], pending: [] });
    expect(express.knows('again')).toBe(true);
    const small = job('small', 't', 3, T0 + 3000);
    express.started([small], express.plan([small], source([small]), T0 + 3000).starts, new Set(['small']), T0 + 3000);
    expect(express.mayStart({ gpus: 1, gpuType: 'h100', tenantId: 't' })).toBe(false);
    expect(express.anyFree()).toBe(true); // the sick node's two
    const none = new ExpressState({ snapshot: { ...s, nodes: [node('a', 'h100')], running: [{ ...running[0]!, gpus: 8, placement: [{ nodeId: 'a', gpuIndices: [0, 1, 2, 3, 4, 5, 6, 7] }] }] }, plan, started: new Set() });
    expect(none.anyFree()).toBe(false);
  });

  it('never starts a newcomer the full policy would not start on the same state (property)', () => {
    const arb = fc.record({
      h100: fc.integer({ min: 1, max: 4 }),
      h800: fc.integer({ min: 0, max: 3 }),
      busy: fc.array(fc.record({ tenant: fc.integer({ min: 0, max: 2 }), node: fc.nat(6), gpus: fc.constantFrom(1, 2, 4, 8), hours: fc.integer({ min: 1, max: 6 }) }), { maxLength: 8 }),
      queued: fc.array(fc.record({ tenant: fc.integer({ min: 0, max: 2 }), gpus: fc.constantFrom(1, 2, 4, 8, 16), type: fc.constantFrom('h100' as const, 'h800' as const, 'any' as const), hours: fc.integer({ min: 1, max: 8 }), prio: fc.integer({ min: 0, max: 2 }) }), { maxLength: 12 }),
      fresh: fc.array(fc.record({ tenant: fc.integer({ min: 0, max: 2 }), gpus: fc.constantFrom(1, 2, 4, 8), type: fc.constantFrom('h100' as const, 'h800' as const, 'any' as const), hours: fc.integer({ min: 1, max: 8 }), prio: fc.integer({ min: 0, max: 2 }) }), { minLength: 1, maxLength: 3 }),
      guarantees: fc.array(fc.integer({ min: 0, max: 16 }), { minLength: 3, maxLength: 3 }),
      extra: fc.array(fc.integer({ min: 0, max: 24 }), { minLength: 3, maxLength: 3 }),
      // A queued job cancelled between the pass and the newcomers (none when past the queue's end).
      cancelled: fc.nat(15),
    });
    let expressed = 0;
    let refusedByFull = 0;
    fc.assert(
      fc.property(arb, (w) => {
        const { nodes, running } = smallFleet(w.h100, w.h800, w.busy, { submittedAt: T0 - 3 * HOUR * 1000 });
        const tenants = [0, 1, 2].map((i) => ({
          id: `t${i}`,
          name: `t${i}`,
          weight: 1,
          decayedUsage: i * 100,
          quotas: { h100: { guaranteed: w.guarantees[i]!, limit: w.guarantees[i]! + w.extra[i]! }, h800: { guaranteed: w.guarantees[i]!, limit: w.guarantees[i]! + w.extra[i]! } },
        }));
        const pending = w.queued.map((q, i) => ({ ...job(`q${String(i).padStart(2, '0')}`, `t${q.tenant}`, q.gpus, T0 - (20 - i) * 60_000, q.type, q.hours), priority: q.prio }));
        const s: Snapshot = { now: T0, config: CONFIG, tenants, nodes, running, pending };
        const plan = schedule(s);
        const express = new ExpressState({ snapshot: s, plan, started: new Set(plan.starts.map((x) => x.jobId)) });
        const now = T0 + 5000;
        const newcomers = w.fresh.map((q, i) => ({ ...job(`x${i}`, `t${q.tenant}`, q.gpus, now, q.type, q.hours), priority: q.prio }));
        const gone = `q${String(w.cancelled).padStart(2, '0')}`;
        const state = { ...after(s, plan, now, newcomers), pending: after(s, plan, now, newcomers).pending.filter((j) => j.id !== gone) };
        const quick = express.plan(newcomers, source(state.pending), now);
        // What the full policy does on the same state: every express start is one of its starts.
        const full = schedule(state);
        const fullStarts = new Set(full.starts.map((x) => x.jobId));
        for (const st of quick.starts) expect(fullStarts.has(st.jobId), `express started ${st.jobId}, the full pass would not`).toBe(true);
        // The free-GPU bound never turns away a newcomer a plan could start.
        for (const n of newcomers) if (fullStarts.has(n.id)) expect(express.mayStart(n), `${n.id} started by the full pass, but mayStart is false`).toBe(true);
        if (full.starts.some((st) => st.jobId.startsWith('x'))) expect(express.anyFree()).toBe(true);
        expressed += quick.starts.length;
        refusedByFull += newcomers.filter((n) => !fullStarts.has(n.id)).length;
        // No GPU twice, none held, quotas' limits honoured.
        const held = new Set(state.running.flatMap((r) => r.placement.flatMap((p) => p.gpuIndices.map((g) => `${p.nodeId}/${g}`))));
        const used = new Map<string, number>();
        for (const r of state.running) used.set(`${r.tenantId}/${r.gpuModel}`, (used.get(`${r.tenantId}/${r.gpuModel}`) ?? 0) + r.gpus);
        for (const st of quick.starts) {
          const j = newcomers.find((n) => n.id === st.jobId)!;
          for (const p of st.placement) for (const g of p.gpuIndices) {
            expect(held.has(`${p.nodeId}/${g}`)).toBe(false);
            held.add(`${p.nodeId}/${g}`);
          }
          const k = `${j.tenantId}/${st.gpuModel}`;
          used.set(k, (used.get(k) ?? 0) + j.gpus);
          const t = tenants.find((x) => x.id === j.tenantId)!;
          expect(used.get(k)!).toBeLessThanOrEqual(t.quotas[st.gpuModel].limit);
        }
        expect(quick.preemptions).toEqual([]);
      }),
      { numRuns: Number(process.env.EXPRESS_RUNS ?? 300), examples: FOUND.map((w) => [w] as [never]) },
    );
    // The property is not vacuous: newcomers do start by express, and others are held back.
    expect(expressed).toBeGreaterThan(50);
    expect(refusedByFull).toBeGreaterThan(50);
  });
});
