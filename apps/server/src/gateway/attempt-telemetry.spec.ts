import { describe, expect, it } from 'vitest';
import { AttemptTelemetry } from './attempt-telemetry';

const job = (id: string, attempts: number, node: string, gpuIndices: number[]) => ({ id, attempts, placement: [{ nodeId: node, gpuIndices }] });

describe('attempt telemetry', () => {
  it('integrates each interval at the later sample, idle under the ratio, per attempt', () => {
    const t = new AttemptTelemetry(0.05);
    t.placed('n1', [job('a', 1, 'n1', [0, 1])]);
    t.sample('n1', 0, [{ index: 0, utilization: 0.9 }, { index: 1, utilization: 0.01 }]);
    t.sample('n1', 10_000, [{ index: 0, utilization: 0.5 }, { index: 1, utilization: 0.02 }]);
    t.sample('n1', 20_000, [{ index: 0, utilization: 0.04 }, { index: 1, utilization: 0.9 }]);
    const [d] = t.take();
    expect(d).toMatchObject({ jobId: 'a', attempt: 1, sampledGpuSeconds: 40, idleGpuSeconds: 20, idleSince: null });
    expect(d!.busyGpuSeconds).toBeCloseTo(10 * 0.5 + 10 * 0.04 + 10 * 0.02 + 10 * 0.9, 9);
    expect(t.take()).toEqual([]); // taken once
  });

  it('says since when every GPU of the attempt has been idle', () => {
    const t = new AttemptTelemetry(0.05);
    t.placed('n1', [job('a', 1, 'n1', [0, 1])]);
    t.sample('n1', 0, [{ index: 0, utilization: 0 }, { index: 1, utilization: 0.8 }]);
    t.sample('n1', 5_000, [{ index: 0, utilization: 0 }, { index: 1, utilization: 0 }]);
    t.sample('n1', 9_000, [{ index: 0, utilization: 0 }, { index: 1, utilization: 0 }]);
    expect(t.take()[0]!.idleSince).toEqual(new Date(5_000));
  });

  it('caps a gap (an agent cut off), ignores late samples, and starts afresh for a new attempt on the same GPU', () => {
    const t = new AttemptTelemetry(0.05, 60_000);
    t.placed('n1', [job('a', 1, 'n1', [0])]);
    t.sample('n1', 0, [{ index: 0, utilization: 1 }]);
    t.sample('n1', 600_000, [{ index: 0, utilization: 1 }]); // ten minutes unheard: 60 s counted
    t.sample('n1', 300_000, [{ index: 0, utilization: 0 }]); // late: counted already
    expect(t.take()).toEqual([{ jobId: 'a', attempt: 1, sampledGpuSeconds: 60, busyGpuSeconds: 60, idleGpuSeconds: 0, idleSince: null }]);
    t.placed('n1', [job('a', 2, 'n1', [0])]); // requeued and placed here again
    t.sample('n1', 610_000, [{ index: 0, utilization: 0 }]);
    expect(t.take()).toEqual([]); // the new attempt's first sample starts its integration
    t.sample('n1', 620_000, [{ index: 0, utilization: 0 }]);
    expect(t.take()).toEqual([{ jobId: 'a', attempt: 2, sampledGpuSeconds: 10, busyGpuSeconds: 0, idleGpuSeconds: 10, idleSince: new Date(610_000) }]);
  });

  it('forgets the GPUs of a node that left, and only that node: back, it starts afresh', () => {
    const t = new AttemptTelemetry(0.05);
    // n1 and n10: one name starts the other's.
    t.placed('n1', [job('a', 1, 'n1', [0])]);
    t.placed('n10', [job('b', 1, 'n10', [0])]);
    for (const at of [0, 1000]) for (const n of ['n1', 'n10']) t.sample(n, at, [{ index: 0, utilization: 0 }]);
    t.forget('n1');
    t.sample('n1', 2000, [{ index: 0, utilization: 1 }]); // not placed any more: nothing counted
    t.sample('n10', 2000, [{ index: 0, utilization: 0 }]);
    expect(t.take().map((d) => [d.jobId, d.sampledGpuSeconds, d.idleSince])).toEqual([['a', 1, null], ['b', 2, new Date(0)]]);
    t.placed('n1', [job('a', 1, 'n1', [0])]); // the agent is back: its next sample starts over
    t.sample('n1', 60_000, [{ index: 0, utilization: 1 }]);
    expect(t.take()).toEqual([]);
    t.sample('n1', 61_000, [{ index: 0, utilization: 1 }]);
    expect(t.take().map((d) => [d.jobId, d.sampledGpuSeconds, d.busyGpuSeconds])).toEqual([['a', 1, 1]]);
  });

  it('counts nothing for GPUs no attempt holds, keeps a failed store for the next, and takes one job alone', () => {
    const t = new AttemptTelemetry(0.05);
    t.placed('n1', [job('a', 1, 'n1', [0]), job('b', 3, 'n1', [1])]);
    for (const at of [0, 1000]) t.sample('n1', at, [{ index: 0, utilization: 1 }, { index: 1, utilization: 1 }, { index: 2, utilization: 0 }]);
    const b = t.take('b');
    expect(b.map((d) => [d.jobId, d.attempt, d.sampledGpuSeconds])).toEqual([['b', 3, 1]]);
    t.restore(b);
    t.sample('n1', 2000, [{ index: 1, utilization: 1 }]);
    expect(t.take().map((d) => [d.jobId, d.sampledGpuSeconds]).sort()).toEqual([['a', 1], ['b', 2]]);
  });
});
