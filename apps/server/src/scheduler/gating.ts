import type { DependencyKind, JobState } from '@nuri/contracts';

/** Where a dependency stands: met, not yet, or never (the job it waits for ended the other way). */
export type DependencyStatus = 'met' | 'waiting' | 'never';

const LIVE: readonly JobState[] = ['pending', 'running'];

/** What a dependency of `kind` on a job now in `state` means (terminal states are final). */
export function dependencyStatus(kind: DependencyKind, state: JobState): DependencyStatus {
  if (LIVE.includes(state)) return 'waiting';
  switch (kind) {
    case 'afterok':
      return state === 'completed' ? 'met' : 'never';
    case 'afternotok':
      return state === 'completed' ? 'never' : 'met';
    case 'afterany':
      return 'met';
  }
}

const short = (id: string) => id.slice(0, 8);

/** A task of an array that caps how many of its tasks run at once. */
const capped = (j: GateJob): boolean => j.arrayId !== null && j.arrayMaxRunning !== null;

export interface GateJob {
  id: string;
  arrayId: string | null;
  arrayTaskId: number | null;
  arrayMaxRunning: number | null;
}

export interface GateDependency {
  jobId: string;
  kind: DependencyKind;
  dependsOn: string;
  state: JobState;
}

export interface Gate<J> {
  /** What the core may plan this pass. */
  eligible: J[];
  /** Pending jobs kept from the core this pass, with the reason they show. */
  withheld: { job: J; reason: string; code: 'waiting_for_dependency' | 'array_throttled' }[];
  /** Pending jobs whose dependency can never be met: they end cancelled with this reason. */
  doomed: { job: J; reason: string }[];
}

/**
 * Decides which pending jobs the core may plan: a job with a dependency not met yet is
 * withheld (its reason names the first job it waits for), one with a dependency that can
 * never be met is doomed; of an array that caps its running tasks at N, with r running, only
 * its N - r lowest-indexed tasks free to start are passed on, so no plan can start more.
 * `deps` may hold any subset of the pending jobs' dependencies that includes every unmet one
 * (the scheduler reads one deciding row per job); order decides which unmet one is named.
 */
export function gatePending<J extends GateJob>(pending: readonly J[], deps: readonly GateDependency[], runningPerArray: ReadonlyMap<string, number>): Gate<J> {
  const blocked = new Map<string, { status: DependencyStatus; dep: GateDependency }>();
  for (const d of deps) {
    const status = dependencyStatus(d.kind, d.state);
    if (status === 'met') continue;
    const cur = blocked.get(d.jobId);
    if (!cur || (status === 'never' && cur.status !== 'never')) blocked.set(d.jobId, { status, dep: d });
  }
  // Nothing gated (the usual pass): every job goes on as it is, without three walks of the
  // queue and two copies (about 20 ms a pass at 100,000 pending jobs).
  if (!blocked.size && !pending.some(capped)) return { eligible: pending.slice(), withheld: [], doomed: [] };
  const gate: Gate<J> = { eligible: [], withheld: [], doomed: [] };
  const free: J[] = [];
  for (const j of pending) {
    const b = blocked.get(j.id);
    if (!b) free.push(j);
    else if (b.status === 'never')
      gate.doomed.push({ job: j, reason: `dependency ${b.dep.kind}:${short(b.dep.dependsOn)} can never be met: job ${short(b.dep.dependsOn)} ended ${b.dep.state}` });
    else gate.withheld.push({ job: j, reason: `waiting for job ${short(b.dep.dependsOn)} (${b.dep.kind})`, code: 'waiting_for_dependency' });
  }
  // The throttle: per capped array, the lowest task indices free to start take its free slots.
  const byArray = new Map<string, J[]>();
  for (const j of free) {
    if (!capped(j)) continue;
    const tasks = byArray.get(j.arrayId!);
    if (tasks) tasks.push(j);
    else byArray.set(j.arrayId!, [j]);
  }
  const held = new Map<string, string>();
  for (const [arrayId, tasks] of byArray) {
    const cap = tasks[0]!.arrayMaxRunning!;
    const slots = Math.max(0, cap - (runningPerArray.get(arrayId) ?? 0));
    tasks.sort((a, b) => (a.arrayTaskId ?? 0) - (b.arrayTaskId ?? 0) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    for (const t of tasks.slice(slots)) held.set(t.id, `array limit: at most ${cap} of its tasks run at once`);
  }
  for (const j of free) {
    const why = held.get(j.id);
    if (why === undefined) gate.eligible.push(j);
    else gate.withheld.push({ job: j, reason: why, code: 'array_throttled' });
  }
  return gate;
}
