import type { TelemetryDelta } from '@nuri/db';

/** One GPU's last sample, and whose attempt it served. */
interface GpuTrack {
  jobId: string;
  attempt: number;
  /** `${jobId}/${attempt}`, made once per attempt on the GPU rather than per sample. */
  key: string;
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
  /**
   * Per node: GPU index → its track. By node, so a node that leaves is forgotten at once: keyed
   * "node/index" in one map, forgetting scanned every GPU, and 4,000 agents leaving in a restart
   * cost 4,000 × 32,000 key tests (6.3 s of a bench:live server's CPU).
   */
  private readonly gpus = new Map<string, Map<number, GpuTrack>>();
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
    this.gpus.delete(nodeId);
  }

  /** One samples message of a node at `atMs`. */
  sample(nodeId: string, atMs: number, samples: readonly { index: number; utilization?: number }[]): void {
    const owners = this.owners.get(nodeId);
    if (!owners) return;
    let tracks = this.gpus.get(nodeId);
    for (const s of samples) {
      const owner = owners.get(s.index);
      if (!owner || s.utilization === undefined || Number.isNaN(s.utilization)) {
        if (!owner) tracks?.delete(s.index);
        continue;
      }
      if (!tracks) this.gpus.set(nodeId, (tracks = new Map()));
      const prev = tracks.get(s.index);
      const idle = s.utilization < this.idleRatio;
      if (!prev || prev.jobId !== owner.jobId || prev.attempt !== owner.attempt) {
        // A new attempt on this GPU: integration starts at its next sample.
        tracks.set(s.index, { jobId: owner.jobId, attempt: owner.attempt, key: `${owner.jobId}/${owner.attempt}`, at: atMs, idleSince: idle ? atMs : undefined });
        continue;
      }
      if (atMs <= prev.at) continue; // a late or repeated sample: counted already
      const dt = Math.min(atMs - prev.at, this.maxGapMs) / 1000;
      prev.at = atMs;
      prev.idleSince = idle ? (prev.idleSince ?? atMs) : undefined;
      let a = this.acc.get(prev.key);
      if (!a) this.acc.set(prev.key, (a = { jobId: owner.jobId, attempt: owner.attempt, sampled: 0, busy: 0, idle: 0 }));
      a.sampled += dt;
      a.busy += dt * s.utilization;
      if (idle) a.idle += dt;
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
    for (const tracks of this.gpus.values())
      for (const g of tracks.values()) {
        if (jobId !== undefined && g.jobId !== jobId) continue;
        const was = out.get(g.key);
        if (was === null) continue;
        out.set(g.key, g.idleSince === undefined ? null : Math.max(was ?? -Infinity, g.idleSince));
      }
    return out;
  }
}
