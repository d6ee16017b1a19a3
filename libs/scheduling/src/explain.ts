/** Sentences for pending reasons: say what holds the job and what the user can do about it. */
import { GpuModel, PendingJob } from './types';

const fmtCache = new Map<number, string>();
const fmt = (t: number) => {
  let s = fmtCache.get(t);
  if (s === undefined) {
    s = new Date(t).toISOString().replace('.000Z', 'Z');
    if (fmtCache.size > 10_000) fmtCache.clear();
    fmtCache.set(t, s);
  }
  return s;
};
// Message pieces that depend only on (GPU count, type) are built once: a pass explains every
// pending job, and most share a handful of sizes.
const whatCache = new Map<number, string>();
const behindCache = new Map<number, string>();
/** A job's kind for sentence caches: its GPU count and wished type, as one number. */
export const kindKey = (job: PendingJob) => job.gpus * 3 + (job.gpuType === 'any' ? 0 : job.gpuType === 'h100' ? 1 : 2);
const what = (job: PendingJob) => {
  const k = kindKey(job);
  let s = whatCache.get(k);
  if (s === undefined) {
    s = `${job.gpus} ${job.gpuType === 'any' ? '' : job.gpuType.toUpperCase() + ' '}GPU${job.gpus > 1 ? 's' : ''}`;
    if (whatCache.size > 10_000) whatCache.clear();
    whatCache.set(k, s);
  }
  return s;
};
const behindHead = (job: PendingJob) => {
  const k = kindKey(job);
  let s = behindCache.get(k);
  if (s === undefined) {
    s = `Waiting for ${what(job)}: `;
    if (behindCache.size > 10_000) behindCache.clear();
    behindCache.set(k, s);
  }
  return s;
};
const behindMsgCache = new Map<number, string>();
/** Two significant figures: 12345 -> 12000. */
const roundTwo = (n: number) => {
  let p = 1;
  while (n >= 100 * p) p *= 10;
  return Math.round(n / p) * p;
};
const heldCache = new Map<number, { forJob: string; at: number; maxLimitSeconds: number; msg: string }>();
const BEHIND_ONE = ' higher-ranked job (priority, fair share or age) waits for the same GPUs. A lower GPU count or shorter time limit may let it start sooner by backfill.';
const BEHIND_MANY = ' higher-ranked jobs (priority, fair share or age) wait for the same GPUs. A lower GPU count or shorter time limit may let it start sooner by backfill.';

export const messages = {
  noNodeOfType: (job: PendingJob) =>
    `No ${job.gpuType.toUpperCase()} node exists in this cluster; resubmit with gpuType "any" or another type.`,
  nodesUnavailable: (job: PendingJob) =>
    job.gpus > 8
      ? `Not enough ${job.gpuType === 'any' ? '' : job.gpuType.toUpperCase() + ' '}nodes with all 8 GPUs healthy are in service (others are drained, down or have failed GPUs) for ${Math.ceil(job.gpus / 8)} whole nodes; ask an operator or request fewer GPUs.`
      : `No ${job.gpuType === 'any' ? '' : job.gpuType.toUpperCase() + ' '}node in service has ${job.gpus} healthy GPUs (nodes are drained, down or have failed GPUs); ask an operator or request fewer GPUs.`,
  overLimit: (job: PendingJob, tenant: string, detail: string) =>
    `Tenant ${tenant} is at its quota limit (${detail}); this job needs ${what(job)} and starts when the tenant's running jobs free enough, or when an operator raises the limit.`,
  reclaim: (job: PendingJob, model: GpuModel, victims: number, graceSeconds: number) =>
    victims > 0
      ? `Within the tenant's guaranteed ${model.toUpperCase()} capacity: preempting ${victims} job${victims > 1 ? 's' : ''} running on borrowed capacity; starts after their ${graceSeconds}s grace period.`
      : `Within the tenant's guaranteed ${model.toUpperCase()} capacity: waiting for preempted jobs to stop (at most ${graceSeconds}s).`,
  nextInLine: (job: PendingJob, model: GpuModel, at: number) =>
    `Next in line for ${what(job)}: GPUs are reserved on ${model.toUpperCase()} from ${fmt(at)}, when running jobs reach their time limits (earlier if they finish sooner).`,
  behind: (job: PendingJob, ahead: number) => {
    // Exact up to 100, then two significant figures ("about 12000"): nobody acts differently on
    // 12,345 or 12,000 jobs ahead, and the sentences can then be shared (a pass explains every
    // pending job; 100,000 distinct sentences cost more than the rest of the explanation).
    const exact = ahead <= 100;
    const n = exact ? ahead : roundTwo(ahead);
    const k = (kindKey(job) * 2 + (exact ? 0 : 1)) * 1e9 + n;
    let s = behindMsgCache.get(k);
    if (s === undefined) {
      s = behindHead(job) + (exact ? String(n) : `about ${n}`) + (ahead === 1 ? BEHIND_ONE : BEHIND_MANY);
      if (behindMsgCache.size > 50_000) behindMsgCache.clear();
      behindMsgCache.set(k, s);
    }
    return s;
  },
  heldForLarger: (job: PendingJob, forJob: string, at: number, maxLimitSeconds: number) => {
    const k = kindKey(job);
    const c = heldCache.get(k);
    if (c && c.forJob === forJob && c.at === at && c.maxLimitSeconds === maxLimitSeconds) return c.msg;
    const msg =
      `Free GPUs are held for job ${forJob}, which starts at ${fmt(at)}; this job would delay it.` +
      (maxLimitSeconds >= 60
        ? ` With a time limit under ${Math.floor(maxLimitSeconds / 60)} minutes it could start now by backfill.`
        : ' A shorter time limit would let it start by backfill.');
    if (heldCache.size > 10_000) heldCache.clear();
    heldCache.set(k, { forJob, at, maxLimitSeconds, msg });
    return msg;
  },
  limitHeld: (job: PendingJob, tenant: string, forJob: string, at: number) =>
    `Tenant ${tenant}'s room under its quota limit is held for its older job ${forJob}, which starts at ${fmt(at)}; this job (${what(job)}) would run past that. With a shorter time limit it could start now.`,
  /** Why a running job was preempted (the victim's reason, not a pending one). */
  preempted: (model: GpuModel, tenant: string, forJob: string) =>
    `Preempted: it ran on borrowed ${model.toUpperCase()} capacity that tenant ${tenant} needs within its guarantee (job ${forJob}); it goes back to the queue.`,
  strictOrder: (job: PendingJob, ahead: number) =>
    `Strict submission order: waiting for ${ahead} earlier job${ahead === 1 ? '' : 's'} to start first.`,
};
