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
const what = (job: PendingJob) => `${job.gpus} ${job.gpuType === 'any' ? '' : job.gpuType.toUpperCase() + ' '}GPU${job.gpus > 1 ? 's' : ''}`;

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
  behind: (job: PendingJob, ahead: number) =>
    `Waiting for ${what(job)}: ${ahead} higher-ranked job${ahead === 1 ? '' : 's'} (priority, fair share or age) wait${ahead === 1 ? 's' : ''} for the same GPUs. A lower GPU count or shorter time limit may let it start sooner by backfill.`,
  heldForLarger: (job: PendingJob, forJob: string, at: number, maxLimitSeconds: number) =>
    `Free GPUs are held for job ${forJob}, which starts at ${fmt(at)}; this job would delay it.` +
    (maxLimitSeconds >= 60
      ? ` With a time limit under ${Math.floor(maxLimitSeconds / 60)} minutes it could start now by backfill.`
      : ' A shorter time limit would let it start by backfill.'),
  strictOrder: (job: PendingJob, ahead: number) =>
    `Strict submission order: waiting for ${ahead} earlier job${ahead === 1 ? '' : 's'} to start first.`,
};
