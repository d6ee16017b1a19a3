import type { JobProcess } from './proc-scan';
import { FAIL_EXIT_CODE, nodesOf, type JobSpec } from './workload';

/**
 * The invariants of issue 11, checked two ways:
 *  - while the run goes on, every ~500 ms (SampleChecker): the agents' process tables (/proc)
 *    against the running jobs and live allocations in the database;
 *  - once the center is quiet (finalChecks): the whole history in the database, the cancels
 *    the harness made, what is left on the nodes.
 * Each violation names its invariant, the job and node, and what was seen.
 */
export type Invariant =
  | 'terminal-or-pending-with-reason'
  | 'running-without-process'
  | 'process-without-running-job'
  | 'gpu-held-twice'
  | 'exit-recorded-once'
  | 'cancel-is-final'
  | 'requeued-jobs-finish'
  | 'expected-outcome'
  | 'one-process-per-attempt'
  | 'allocations-match-transitions'
  | 'agent-state-clean';

export interface Violation {
  invariant: Invariant;
  detail: string;
  job?: string;
  node?: string;
  /** ms since the start of the fault phase, when seen during the run. */
  at?: number;
}

export const TERMINAL = new Set(['completed', 'failed', 'cancelled', 'timeout', 'node_failed']);

// ---------------------------------------------------------------- during the run

export interface DbJobState {
  state: string;
  attempts: number;
  gpus: number;
}

/** One node of one running job's live placement. */
export interface RunningPlacement {
  jobId: string;
  attempt: number;
  node: string;
}

/** An agent's running.json entry: the process group and attempt of a job it runs. */
export interface RunningFileEntry {
  pgid: number;
  attempt?: number;
}

export interface Sample {
  /** ms since the start of the fault phase. */
  at: number;
  jobs: ReadonlyMap<string, DbJobState>;
  running: readonly RunningPlacement[];
  procs: readonly JobProcess[];
  /** node -> jobId -> entry, read from each agent's <workDir>/running.json. */
  runningFiles: ReadonlyMap<string, ReadonlyMap<string, RunningFileEntry>>;
  /** The node's agent and its gateway are up (not killed, not stopped): only then can the control loop act there. */
  healthy: (node: string) => boolean;
}

interface Anomaly {
  invariant: Invariant;
  job: string;
  node: string;
  firstAt: number;
  lastAt: number;
  healthyMs: number;
  detail: string;
  flagged: boolean;
}

interface Group {
  node: string;
  pgid: number;
  jobId: string;
  pids: number[];
  gpus: Set<number>;
  attempt: number | undefined;
}

export interface ObservedAttempt {
  jobId: string;
  attempt: number;
  node: string;
  pgids: Set<number>;
  firstAt: number;
}

/**
 * Sample-based checks. A mismatch between processes and the database is allowed for a while
 * (a start on its way, an exit being reported, a stop in its grace period); it is a violation
 * once it has lasted `persistBoundMs` of time during which the node's agent and gateway were
 * both up (a killed or frozen agent cannot act, so that time does not count). A GPU shared by
 * two process groups, or one attempt with two process groups, is a violation when seen in two
 * consecutive samples (a scan is not atomic).
 */
export class SampleChecker {
  private readonly anomalies = new Map<string, Anomaly>();
  private readonly consecutive = new Map<string, number>();
  private readonly flaggedOnce = new Set<string>();
  private readonly found: Violation[] = [];
  /** `${node}/${pgid}` -> job and attempt, learnt from running.json. */
  private readonly pgAttempt = new Map<string, { jobId: string; attempt: number }>();
  private readonly attempts = new Map<string, ObservedAttempt>();
  private lastAt: number | undefined;
  samples = 0;
  maxProcesses = 0;

  constructor(private readonly o: { persistBoundMs: number; maxStepMs: number; name?: (jobId: string) => string }) {}

  violations(): Violation[] {
    return [...this.found];
  }

  observedAttempts(): ObservedAttempt[] {
    return [...this.attempts.values()];
  }

  /** Mismatches still open (for the report when the run ends). */
  openAnomalies(): Anomaly[] {
    return [...this.anomalies.values()];
  }

  observe(s: Sample): void {
    this.samples++;
    this.maxProcesses = Math.max(this.maxProcesses, s.procs.length);
    const step = this.lastAt === undefined ? 0 : Math.min(Math.max(0, s.at - this.lastAt), this.o.maxStepMs);
    this.lastAt = s.at;
    const nm = (id: string) => (this.o.name ? `${this.o.name(id)} (${id})` : id);

    for (const [node, entries] of s.runningFiles)
      for (const [jobId, e] of entries) if (e.attempt !== undefined) this.pgAttempt.set(`${node}/${e.pgid}`, { jobId, attempt: e.attempt });

    // Process groups of jobs, per node.
    const groups = new Map<string, Group>();
    for (const p of s.procs) {
      const node = p.node ?? '?';
      const key = `${node}/${p.pgid}/${p.jobId}`;
      let g = groups.get(key);
      if (!g) {
        const known = this.pgAttempt.get(`${node}/${p.pgid}`);
        g = { node, pgid: p.pgid, jobId: p.jobId, pids: [], gpus: new Set(), attempt: known && known.jobId === p.jobId ? known.attempt : undefined };
        groups.set(key, g);
      }
      g.pids.push(p.pid);
      for (const i of p.gpus) g.gpus.add(i);
    }

    // History: which process groups each attempt had on each node.
    for (const g of groups.values()) {
      if (g.attempt === undefined) continue;
      const k = `${g.jobId}/${g.attempt}/${g.node}`;
      let o = this.attempts.get(k);
      if (!o) this.attempts.set(k, (o = { jobId: g.jobId, attempt: g.attempt, node: g.node, pgids: new Set(), firstAt: s.at }));
      o.pgids.add(g.pgid);
      if (o.pgids.size > 1 && !this.flaggedOnce.has(`restart/${k}`)) {
        this.flaggedOnce.add(`restart/${k}`);
        this.found.push({
          invariant: 'one-process-per-attempt',
          job: g.jobId,
          node: g.node,
          at: s.at,
          detail: `attempt ${g.attempt} of job ${nm(g.jobId)} was started more than once on ${g.node}: process groups ${[...o.pgids].join(', ')}`,
        });
      }
    }

    const runningOn = new Map<string, number>();
    const runningAnywhere = new Map<string, number>();
    for (const r of s.running) {
      runningOn.set(`${r.jobId}/${r.node}`, r.attempt);
      runningAnywhere.set(r.jobId, r.attempt);
    }
    const seen = new Set<string>();
    const touch = (key: string, a: Omit<Anomaly, 'firstAt' | 'lastAt' | 'healthyMs' | 'flagged'>) => {
      seen.add(key);
      let cur = this.anomalies.get(key);
      if (!cur) this.anomalies.set(key, (cur = { ...a, firstAt: s.at, lastAt: s.at, healthyMs: 0, flagged: false }));
      else {
        if (a.node === '?' || s.healthy(a.node)) cur.healthyMs += step;
        cur.lastAt = s.at;
        cur.detail = a.detail;
      }
      if (!cur.flagged && cur.healthyMs > this.o.persistBoundMs) {
        cur.flagged = true;
        this.found.push({
          invariant: cur.invariant,
          job: cur.job,
          node: cur.node,
          at: cur.firstAt,
          detail: `${cur.detail}; first seen at +${(cur.firstAt / 1000).toFixed(1)} s, still so ${(cur.healthyMs / 1000).toFixed(1)} s of healthy time later (bound ${this.o.persistBoundMs / 1000} s)`,
        });
      }
    };

    // A process without its running job: the job is not running on that node, or runs another attempt.
    for (const g of groups.values()) {
      const want = g.node === '?' ? runningAnywhere.get(g.jobId) : runningOn.get(`${g.jobId}/${g.node}`);
      const ok = want !== undefined && (g.attempt === undefined || g.attempt === want);
      if (ok) continue;
      const db = s.jobs.get(g.jobId);
      const what =
        db === undefined
          ? 'a job the database does not know'
          : want !== undefined
            ? `while the job runs attempt ${want} there`
            : db.state === 'running'
              ? `while the job runs attempt ${db.attempts} elsewhere`
              : `while the job is ${db.state}`;
      touch(`proc/${g.node}/${g.pgid}/${g.jobId}`, {
        invariant: 'process-without-running-job',
        job: g.jobId,
        node: g.node,
        detail: `process group ${g.pgid} (pids ${g.pids.join(',')}) of job ${nm(g.jobId)}${g.attempt !== undefined ? ` attempt ${g.attempt}` : ''} alive on ${g.node} ${what}`,
      });
    }

    // A running job without its process on one of its nodes.
    for (const r of s.running) {
      const has = [...groups.values()].some((g) => g.jobId === r.jobId && g.node === r.node && (g.attempt === undefined || g.attempt === r.attempt));
      if (has) continue;
      touch(`run/${r.jobId}/${r.node}/${r.attempt}`, {
        invariant: 'running-without-process',
        job: r.jobId,
        node: r.node,
        detail: `job ${nm(r.jobId)} is running (attempt ${r.attempt}) with GPUs on ${r.node}, but no process of it runs there`,
      });
    }
    for (const k of [...this.anomalies.keys()]) if (!seen.has(k)) this.anomalies.delete(k);

    // Two process groups on one GPU; one attempt with two process groups (on a node, or on more nodes than it spans).
    const now = new Set<string>();
    const twice = (key: string, v: Violation) => {
      now.add(key);
      const n = (this.consecutive.get(key) ?? 0) + 1;
      this.consecutive.set(key, n);
      if (n >= 2 && !this.flaggedOnce.has(key)) {
        this.flaggedOnce.add(key);
        this.found.push(v);
      }
    };
    const byNode = new Map<string, Group[]>();
    for (const g of groups.values()) byNode.set(g.node, [...(byNode.get(g.node) ?? []), g]);
    for (const [node, gs] of byNode) {
      const perGpu = new Map<number, Group[]>();
      for (const g of gs) for (const i of g.gpus) perGpu.set(i, [...(perGpu.get(i) ?? []), g]);
      for (const [gpu, holders] of perGpu) {
        if (holders.length < 2) continue;
        const who = holders.map((h) => `${nm(h.jobId)}${h.attempt !== undefined ? ` attempt ${h.attempt}` : ''} (pgid ${h.pgid})`).join(' and ');
        twice(`gpu/${node}/${gpu}/${holders.map((h) => h.pgid).sort().join(',')}`, {
          invariant: 'gpu-held-twice',
          node,
          job: holders[0]!.jobId,
          at: s.at,
          detail: `GPU ${gpu} of ${node} used at once by ${who}`,
        });
      }
      const perJob = new Map<string, Group[]>();
      for (const g of gs) perJob.set(g.jobId, [...(perJob.get(g.jobId) ?? []), g]);
      for (const [jobId, js] of perJob) {
        if (js.length < 2) continue;
        const known = new Set(js.map((g) => g.attempt));
        if (known.size > 1 && !known.has(undefined)) continue; // different attempts: the stale one is a process without its job
        twice(`two/${node}/${jobId}/${js.map((g) => g.pgid).sort().join(',')}`, {
          invariant: 'one-process-per-attempt',
          node,
          job: jobId,
          at: s.at,
          detail: `job ${nm(jobId)} has ${js.length} process groups at once on ${node} (pgids ${js.map((g) => g.pgid).join(', ')}; attempts ${js.map((g) => g.attempt ?? '?').join(', ')})`,
        });
      }
    }
    const perAttempt = new Map<string, Set<string>>();
    for (const g of groups.values()) {
      if (g.attempt === undefined || g.node === '?') continue;
      const k = `${g.jobId}/${g.attempt}`;
      perAttempt.set(k, (perAttempt.get(k) ?? new Set()).add(g.node));
    }
    for (const [k, nodes] of perAttempt) {
      const [jobId, attempt] = k.split('/') as [string, string];
      const gpus = s.jobs.get(jobId)?.gpus;
      if (gpus === undefined || nodes.size <= nodesOf(gpus)) continue;
      twice(`nodes/${k}/${[...nodes].sort().join(',')}`, {
        invariant: 'one-process-per-attempt',
        job: jobId,
        at: s.at,
        detail: `attempt ${attempt} of job ${nm(jobId)} (${gpus} GPUs, ${nodesOf(gpus)} node(s)) has processes on ${nodes.size} nodes at once: ${[...nodes].sort().join(', ')}`,
      });
    }
    for (const k of [...this.consecutive.keys()]) if (!now.has(k)) this.consecutive.delete(k);
  }
}

// ---------------------------------------------------------------- after quiescence

export interface DbJob {
  id: string;
  name: string;
  state: string;
  reason: string | null;
  gpus: number;
  requeue: boolean;
  attempts: number;
  exit_code: number | null;
  time_limit_seconds: number;
}

export interface DbTransition {
  job_id: string;
  at: Date;
  from_state: string | null;
  to_state: string;
  reason: string;
}

export interface DbAllocation {
  job_id: string;
  node: string;
  gpu_index: number;
  created_at: Date;
  released_at: Date | null;
}

export interface DbOverlap {
  node: string;
  gpu_index: number;
  a_job: string;
  b_job: string;
  a_from: Date;
  a_to: Date | null;
  b_from: Date;
  b_to: Date | null;
}

/** A cancel the harness sent: the first definitive answer (200, 202, 409), or 'unknown' when none came. */
export interface CancelRecord {
  jobId: string;
  sentAt: number;
  answeredAt: number;
  status: number | 'unknown';
  /** The job's state in the answer (200/202) or the conflict message (409). */
  note: string;
}

export interface AgentLeftovers {
  node: string;
  running: Record<string, unknown>;
  journalEvents: { kind: string; jobId: string; attempt?: number }[];
}

export interface FinalInput {
  /**
   * Overlaps of allocation records no longer than this are not counted: an allocation is
   * stamped with the time its scheduler pass began, a release with the agent's exit time, so
   * a GPU freed while a pass was reading its snapshot shows a few milliseconds of overlap in
   * the records though the database never held both (its unique index forbids it) and no two
   * processes ever shared the GPU (the sampler checks that). Default 0: every overlap counts.
   */
  overlapToleranceMs?: number;
  jobs: readonly DbJob[];
  /** Ordered by id (insertion order). */
  transitions: readonly DbTransition[];
  allocations: readonly DbAllocation[];
  overlaps: readonly DbOverlap[];
  specs: ReadonlyMap<string, JobSpec>;
  cancels: ReadonlyMap<string, CancelRecord>;
  observedAttempts: readonly ObservedAttempt[];
  /** Job processes still alive after quiescence. */
  leftoverProcesses: readonly JobProcess[];
  agents: readonly AgentLeftovers[];
}

const EDGES = new Set([
  'null>pending',
  'pending>running',
  'pending>cancelled',
  'running>pending',
  'running>completed',
  'running>failed',
  'running>cancelled',
  'running>timeout',
  'running>node_failed',
]);

/** What the job's command does when it runs to its end, undisturbed. */
export function commandOutcome(spec: JobSpec): { state: 'completed' | 'failed' | 'timeout'; exitCode?: number } {
  if (spec.kind === 'fail') return { state: 'failed', exitCode: FAIL_EXIT_CODE };
  if (spec.kind === 'timeout') return { state: 'timeout' };
  return { state: 'completed', exitCode: 0 };
}

/** How far apart two database timestamps written for one event may be (ms). */
const SAME_EVENT_MS = 1000;
/** A cancel may lose to the job's own time limit when that limit fell due at most this long after the cancel was answered. */
const TIMEOUT_RACE_MS = 5000;

export function finalChecks(i: FinalInput): Violation[] {
  const out: Violation[] = [];
  const byJob = <T extends { job_id: string }>(rows: readonly T[]) => {
    const m = new Map<string, T[]>();
    for (const r of rows) m.set(r.job_id, [...(m.get(r.job_id) ?? []), r]);
    return m;
  };
  const transitions = byJob(i.transitions);
  const allocations = byJob(i.allocations);
  const jobsById = new Map(i.jobs.map((j) => [j.id, j]));
  const nm = (j: DbJob) => `${j.name} (${j.id})`;

  for (const job of i.jobs) {
    const ts = transitions.get(job.id) ?? [];
    const spec = i.specs.get(job.id);
    const v = (invariant: Invariant, detail: string, node?: string) => out.push({ invariant, job: job.id, detail: `${nm(job)}: ${detail}`, ...(node ? { node } : {}) });

    // Every job terminal, or pending with a reason.
    if (job.state === 'running') v('terminal-or-pending-with-reason', 'still running when the run ended (not quiesced)');
    if (job.state === 'pending' && !job.reason) v('terminal-or-pending-with-reason', 'pending without a reason');

    // Each exit recorded exactly once: the transitions form one path, one way out of each run.
    const history = ts.map((t) => `${t.from_state ?? '∅'}→${t.to_state}`).join(' ');
    if (!ts.length) v('exit-recorded-once', 'no transitions at all');
    for (let k = 0; k < ts.length; k++) {
      const t = ts[k]!;
      const prev = k === 0 ? null : ts[k - 1]!.to_state;
      if (k > 0 && TERMINAL.has(prev!)) {
        v('exit-recorded-once', `transition ${t.from_state}→${t.to_state} ("${t.reason}") after the job had already ended ${prev}; history: ${history}`);
        break;
      }
      if (t.from_state !== prev) v('exit-recorded-once', `transition ${t.from_state}→${t.to_state} ("${t.reason}") recorded while the job was ${prev ?? 'new'}; history: ${history}`);
      if (!EDGES.has(`${t.from_state}>${t.to_state}`)) v('exit-recorded-once', `illegal transition ${t.from_state}→${t.to_state} ("${t.reason}")`);
      if (k > 0 && t.at.getTime() + SAME_EVENT_MS < ts[k - 1]!.at.getTime())
        v('exit-recorded-once', `transition ${t.from_state}→${t.to_state} at ${t.at.toISOString()} is dated before the one it follows (${ts[k - 1]!.at.toISOString()})`);
    }
    if (ts.length && ts[ts.length - 1]!.to_state !== job.state) v('exit-recorded-once', `state ${job.state} but last transition is to ${ts[ts.length - 1]!.to_state}`);
    const runs = ts.map((t, k) => ({ t, k })).filter(({ t }) => t.to_state === 'running');
    if (runs.length !== job.attempts) v('exit-recorded-once', `attempts = ${job.attempts} but ${runs.length} transitions into running`);
    if (job.state === 'completed' && job.exit_code !== 0) v('exit-recorded-once', `completed with exit code ${job.exit_code}`);

    // Allocations: one set per attempt, made when it started, released when it ended.
    const allocs = allocations.get(job.id) ?? [];
    // Each allocation belongs to the latest start at or before it: allocations are stamped by
    // the database when the start commits, a little after the pass's time on the transition.
    const attemptOf = new Map<DbAllocation, number>();
    for (const a of allocs) {
      let best = -1;
      // (50 ms: the pass's clock and the database's are this machine's; a skew larger than that would show here.)
      for (const [n, { t }] of runs.entries()) if (t.at.getTime() <= a.created_at.getTime() + 50) best = n;
      if (best >= 0) attemptOf.set(a, best);
    }
    const placedNodes = (n: number) => new Set(allocs.filter((a) => attemptOf.get(a) === n).map((a) => a.node));
    for (const [n, { t, k }] of runs.entries()) {
      const mine = allocs.filter((a) => attemptOf.get(a) === n);
      const attempt = n + 1;
      if (mine.length !== job.gpus) v('allocations-match-transitions', `attempt ${attempt} started at ${t.at.toISOString()} with ${mine.length} GPU allocations for ${job.gpus} GPUs`);
      const end = ts[k + 1];
      for (const a of mine) {
        if (!end && a.released_at !== null) v('allocations-match-transitions', `attempt ${attempt} still runs but its GPU ${a.node}/${a.gpu_index} was released`, a.node);
        if (end && a.released_at === null) v('allocations-match-transitions', `attempt ${attempt} ended (${end.to_state}, "${end.reason}") but GPU ${a.node}/${a.gpu_index} is still allocated to it`, a.node);
        // Released when the end was recorded: not before the end (dated by the agent's exit),
        // and before the job's next start.
        const next = runs[n + 1]?.t.at.getTime() ?? Infinity;
        if (end && a.released_at && (a.released_at.getTime() + SAME_EVENT_MS < end.at.getTime() || a.released_at.getTime() > next + SAME_EVENT_MS))
          v('allocations-match-transitions', `attempt ${attempt}'s GPU ${a.node}/${a.gpu_index} released at ${a.released_at.toISOString()}, the attempt ended at ${end.at.toISOString()}${next < Infinity ? ` and the next started at ${new Date(next).toISOString()}` : ''}`, a.node);
      }
    }
    for (const a of allocs)
      if (!attemptOf.has(a)) v('allocations-match-transitions', `allocation of GPU ${a.node}/${a.gpu_index} at ${a.created_at.toISOString()} belongs to no start of the job`, a.node);

    // Processes seen for an attempt ran only on that attempt's nodes.
    for (const o of i.observedAttempts) {
      if (o.jobId !== job.id) continue;
      const run = runs[o.attempt - 1];
      const placed = run ? placedNodes(o.attempt - 1) : new Set<string>();
      if (!placed.has(o.node))
        v('process-without-running-job', `a process of attempt ${o.attempt} ran on ${o.node}, where that attempt was never placed (${run ? `placed on ${[...placed].join(', ') || 'nothing'}` : 'no such attempt in the database'})`, o.node);
    }

    if (!spec) {
      v('expected-outcome', 'a job the harness did not submit');
      continue;
    }
    const expected = commandOutcome(spec);
    const cancel = i.cancels.get(job.id);
    const accepted = cancel && (cancel.status === 200 || cancel.status === 202);
    if (accepted) {
      // A cancel is final. Answered 200 (the job was pending) or 202 (running, stop requested),
      // the job ends `cancelled` and never runs again. One exception: the job's own time limit
      // fell due about when the cancel came (the agent's timer fired before the stop arrived),
      // then `timeout` is as true.
      const after = ts.filter((t) => t.at.getTime() > cancel.answeredAt && (t.to_state === 'running' || t.to_state === 'pending'));
      for (const t of after)
        v('cancel-is-final', `cancel answered ${cancel.status} at ${new Date(cancel.answeredAt).toISOString()}, then ${t.from_state}→${t.to_state} at ${t.at.toISOString()} ("${t.reason}")`);
      if (job.state !== 'cancelled') {
        const runAtCancel = [...runs].reverse().find(({ t }) => t.at.getTime() <= cancel.answeredAt);
        const due = runAtCancel ? runAtCancel.t.at.getTime() + job.time_limit_seconds * 1000 : Infinity;
        const timeoutRace = cancel.status === 202 && job.state === 'timeout' && due <= cancel.answeredAt + TIMEOUT_RACE_MS;
        const ended = TERMINAL.has(job.state) ? `the job ended ${job.state} ("${job.reason ?? ''}")` : `the job is still ${job.state}`;
        if (!timeoutRace) v('cancel-is-final', `cancel answered ${cancel.status} (job was ${cancel.note}) but ${ended}; history: ${history}`);
      }
      continue;
    }
    // Not cancelled by the harness: the job ends as its command does. A requeue:false job may
    // instead end node_failed (it lost its node) or cancelled by a preemption.
    const allowed = new Set<string>([expected.state]);
    if (!spec.requeue) allowed.add('node_failed');
    const preempted = job.state === 'cancelled' && /preempt/i.test(job.reason ?? '');
    const requeued = ts.some((t) => t.from_state === 'running' && t.to_state === 'pending');
    if (job.state === 'running') continue; // not quiesced: reported above
    if (!allowed.has(job.state) && !(preempted && !spec.requeue)) {
      const inv: Invariant = requeued ? 'requeued-jobs-finish' : 'expected-outcome';
      v(inv, `ended ${job.state} ("${job.reason ?? ''}"), its command ends ${expected.state}${spec.requeue ? '' : ' (requeue: false)'}${cancel ? `; a cancel was answered ${cancel.status}` : ''}; history: ${history}`);
    } else if (job.state === expected.state && expected.exitCode !== undefined && job.exit_code !== expected.exitCode) {
      v('exit-recorded-once', `ended ${job.state} with exit code ${job.exit_code}, its command exits ${expected.exitCode}`);
    }
  }

  // No GPU held by two live allocations at any moment (allocation history).
  for (const o of i.overlaps) {
    if (overlapMs(o) <= (i.overlapToleranceMs ?? 0)) continue;
    const a = jobsById.get(o.a_job);
    const b = jobsById.get(o.b_job);
    const iso = (d: Date | null) => (d ? d.toISOString() : 'now');
    out.push({
      invariant: 'gpu-held-twice',
      node: o.node,
      job: o.a_job,
      detail: `GPU ${o.node}/${o.gpu_index} allocated to ${a?.name ?? o.a_job} [${iso(o.a_from)}, ${iso(o.a_to)}) and to ${b?.name ?? o.b_job} [${iso(o.b_from)}, ${iso(o.b_to)})`,
    });
  }

  // Nothing left on the nodes once every job has ended.
  for (const p of i.leftoverProcesses) {
    const job = jobsById.get(p.jobId);
    if (job?.state === 'running') continue; // not quiesced: reported above
    out.push({
      invariant: 'process-without-running-job',
      job: p.jobId,
      node: p.node,
      detail: `after quiescence, process ${p.pid} (pgid ${p.pgid}) of ${job ? `${job.name}, ${job.state}` : `unknown job ${p.jobId}`} still alive on ${p.node ?? '?'}`,
    });
  }
  for (const a of i.agents) {
    const stale = Object.keys(a.running).filter((id) => jobsById.get(id)?.state !== 'running');
    if (stale.length)
      out.push({ invariant: 'agent-state-clean', node: a.node, detail: `${a.node}/running.json still lists ended job(s) ${stale.map((id) => jobsById.get(id)?.name ?? id).join(', ')}: ${JSON.stringify(a.running)}` });
    if (a.journalEvents.length)
      out.push({
        invariant: 'agent-state-clean',
        node: a.node,
        detail: `${a.node}/journal.jsonl holds ${a.journalEvents.length} job event(s) the server never acknowledged: ${a.journalEvents
          .slice(0, 5)
          .map((e) => `${e.kind} ${jobsById.get(e.jobId)?.name ?? e.jobId}${e.attempt !== undefined ? ` attempt ${e.attempt}` : ''}`)
          .join('; ')}`,
      });
  }
  return out;
}

/** How long two allocation records of one GPU overlap (ms; Infinity when both are still live). */
export function overlapMs(o: DbOverlap): number {
  const end = Math.min(o.a_to?.getTime() ?? Infinity, o.b_to?.getTime() ?? Infinity);
  return end - Math.max(o.a_from.getTime(), o.b_from.getTime());
}
