import type { TelemetryDelta } from '@nuri/db';

/** One GPU's last sample, and whose attempt it served. */
interface GpuTrack {
  jobId: string;
  attempt: number;
  at: number;
  /** Since when this GPU has been under the idle ratio (ms); undefined: busy or unknown. */
  idleSince?: number;
}

interface Acc {
  jobId: string;
  attempt: number;
  sampled: number;
  busy: number;
  idle: number;
}

/**
 * Integrates, per running attempt, the utilization samples a gateway already receives:
 * GPU-seconds sampled, utilization-weighted GPU-seconds (their ratio is the mean
 * utilization) and GPU-seconds under the idle ratio. Each interval between two samples of
 * a GPU counts at the later sample's utilization, capped at `maxGapMs` (an agent that was
 * cut off does not make its silence idle or busy). Time before an attempt's first sample is
 * not sampled: the mean is over what was seen. Pure bookkeeping; the fleet service stores
 * the deltas (`take`) in the ledger, periodically and when an attempt ends.
 */
export class AttemptTelemetry {
  /** Per node: GPU index → the attempt placed on it (from the gateway's reconcile reads). */
  private readonly owners = new Map<string, Map<number, { jobId: string; attempt: number }>>();
  private readonly gpus = new Map<string, GpuTrack>();
  private acc = new Map<string, Acc>();

  constructor(
    private readonly idleRatio: number,
    private readonly maxGapMs = 60_000,
  ) {}

  /** The attempts running on a node now, with their GPUs there (replaces what was known of that node). */
  placed(nodeId: string, jobs: readonly { id: string; attempts?: number; placement: readonly { nodeId: string; gpuIndices: readonly number[] }[] }[]): void {
    const m = new Map<number, { jobId: string; attempt: number }>();
    for (const j of jobs) {
      if (j.attempts === undefined) continue;
      for (const p of j.placement) if (p.nodeId === nodeId) for (const i of p.gpuIndices) m.set(i, { jobId: j.id, attempt: j.attempts });
    }
    this.owners.set(nodeId, m);
  }

  /** A node is gone from this gateway: forget its GPUs (what was integrated stays until taken). */
  forget(nodeId: string): void {
    this.owners.delete(nodeId);
    for (const k of [...this.gpus.keys()]) if (k.startsWith(`${nodeId}/`)) this.gpus.delete(k);
  }

  /** One samples message of a node at `atMs`. */
  sample(nodeId: string, atMs: number, samples: readonly { index: number; utilization?: number }[]): void {
    const owners = this.owners.get(nodeId);
    if (!owners) return;
    for (const s of samples) {
      const owner = owners.get(s.index);
      const key = `${nodeId}/${s.index}`;
      if (!owner || s.utilization === undefined || Number.isNaN(s.utilization)) {
        if (!owner) this.gpus.delete(key);
        continue;
      }
      const prev = this.gpus.get(key);
      const same = prev && prev.jobId === owner.jobId && prev.attempt === owner.attempt;
      const idle = s.utilization < this.idleRatio;
      if (same && atMs <= prev.at) continue; // a late or repeated sample: counted already
      const track: GpuTrack = { ...owner, at: atMs, idleSince: idle ? (same && prev.idleSince !== undefined ? prev.idleSince : atMs) : undefined };
      this.gpus.set(key, track);
      if (!same) continue;
      const dt = Math.min(atMs - prev.at, this.maxGapMs) / 1000;
      const k = `${owner.jobId}/${owner.attempt}`;
      const a = this.acc.get(k) ?? { jobId: owner.jobId, attempt: owner.attempt, sampled: 0, busy: 0, idle: 0 };
      a.sampled += dt;
      a.busy += dt * s.utilization;
      if (idle) a.idle += dt;
      this.acc.set(k, a);
    }
  }

  /**
   * What was integrated since the last take (all attempts, or one job's), as ledger deltas,
   * each with since when all of its GPUs on this gateway's nodes have been idle. Emptied.
   */
  take(jobId?: string): TelemetryDelta[] {
    const since = this.idleSinceByAttempt(jobId);
    const out: TelemetryDelta[] = [];
    for (const [k, a] of this.acc) {
      if (jobId !== undefined && a.jobId !== jobId) continue;
      this.acc.delete(k);
      const s = since.get(k);
      out.push({ jobId: a.jobId, attempt: a.attempt, sampledGpuSeconds: a.sampled, busyGpuSeconds: a.busy, idleGpuSeconds: a.idle, idleSince: s === undefined || s === null ? null : new Date(s) });
    }
    return out;
  }

  /** Puts deltas back (their store failed): they go with the next take. */
  restore(deltas: readonly TelemetryDelta[]): void {
    for (const d of deltas) {
      const k = `${d.jobId}/${d.attempt}`;
      const a = this.acc.get(k) ?? { jobId: d.jobId, attempt: d.attempt, sampled: 0, busy: 0, idle: 0 };
      a.sampled += d.sampledGpuSeconds;
      a.busy += d.busyGpuSeconds;
      a.idle += d.idleGpuSeconds;
      this.acc.set(k, a);
    }
  }

  /** Per attempt (key job/attempt): since when all its GPUs here are idle (ms), or null when one is busy. One pass over the GPUs. */
  private idleSinceByAttempt(jobId?: string): Map<string, number | null> {
    const out = new Map<string, number | null>();
    for (const g of this.gpus.values()) {
      if (jobId !== undefined && g.jobId !== jobId) continue;
      const k = `${g.jobId}/${g.attempt}`;
      const was = out.get(k);
      if (was === null) continue;
      out.set(k, g.idleSince === undefined ? null : Math.max(was ?? -Infinity, g.idleSince));
    }
    return out;
  }
}
