/** Text output helpers: durations, Slurm state codes, tables aligned by display width. */
import { JOB_STATES, type PendingReasonCodeName } from '@nuri/contracts/constants';
import stringWidth from 'string-width';
import { UsageError } from './errors';

export { JOB_STATES };
export type JobStateName = (typeof JOB_STATES)[number];

/** Slurm's state codes and long names, as squeue and sacct print them. */
const SLURM_STATES: Record<string, JobStateName> = {
  PD: 'pending',
  PENDING: 'pending',
  R: 'running',
  RUNNING: 'running',
  CD: 'completed',
  COMPLETED: 'completed',
  F: 'failed',
  FAILED: 'failed',
  CA: 'cancelled',
  CANCELLED: 'cancelled',
  TO: 'timeout',
  TIMEOUT: 'timeout',
  NF: 'node_failed',
  NODE_FAIL: 'node_failed',
};
/**
 * A pending job's reason code as a short word in the manner of squeue's REASON column
 * (Priority, Resources, Dependency...); the sentence saying what to do is in `nuri show`.
 */
export const REASON_LABEL: Record<PendingReasonCodeName, string> = {
  over_quota_limit: 'QuotaLimit',
  waiting_for_reclaim: 'Reclaim',
  waiting_for_resources: 'Resources',
  behind_higher_ranked: 'Priority',
  reservation_for_larger_job: 'Reserved',
  no_node_of_type: 'NoNodeOfType',
  nodes_unavailable: 'NodesUnavailable',
  waiting_for_dependency: 'Dependency',
  array_throttled: 'ArrayLimit',
};

export const STATE_CODE: Record<JobStateName, string> = {
  pending: 'PD',
  running: 'R',
  completed: 'CD',
  failed: 'F',
  cancelled: 'CA',
  timeout: 'TO',
  node_failed: 'NF',
};

/** `--state`: Nuri's names or Slurm's codes, comma-separated, any case. */
export function parseStates(flag: string, value: string): JobStateName[] {
  const out: JobStateName[] = [];
  for (const raw of value.split(',').map((s) => s.trim()).filter(Boolean)) {
    const lower = raw.toLowerCase();
    const s = (JOB_STATES as readonly string[]).includes(lower) ? (lower as JobStateName) : SLURM_STATES[raw.toUpperCase()];
    if (!s) throw new UsageError(`${flag}: "${raw}" is not a job state (${JOB_STATES.join(', ')}, or Slurm's PD, R, CD, F, CA, TO, NF)`);
    if (!out.includes(s)) out.push(s);
  }
  if (!out.length) throw new UsageError(`${flag}: give at least one state`);
  return out;
}

/** `1h 2m`, for sentences. */
export function humanDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return [d && `${d}d`, h && `${h}h`, m && `${m}m`].filter(Boolean).join(' ');
}

/** `[D-]H:MM:SS` or `M:SS`, as squeue prints TIME and TIME_LEFT. */
export function clock(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const two = (n: number) => String(n).padStart(2, '0');
  if (d) return `${d}-${two(h)}:${two(m)}:${two(sec)}`;
  if (h) return `${h}:${two(m)}:${two(sec)}`;
  return `${m}:${two(sec)}`;
}

export function when(iso: string | null, now: Date): string {
  if (!iso) return '-';
  const dt = (new Date(iso).getTime() - now.getTime()) / 1000;
  return dt >= 0 ? `in ${humanDuration(dt)}` : `${humanDuration(-dt)} ago`;
}

export const width = (s: string): number => stringWidth(s);

/** Columns padded to the widest cell by display width (a Hangul syllable takes two columns). */
export function table(rows: string[][]): string[] {
  const widths: number[] = [];
  for (const r of rows) r.forEach((cell, c) => (widths[c] = Math.max(widths[c] ?? 0, width(cell))));
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell + ' '.repeat(widths[c]! - width(cell)))).join('  ').trimEnd());
}

export const shortId = (id: string): string => id.slice(0, 8);
