import { spawn, type ChildProcess } from 'node:child_process';
import { type WriteStream, chownSync, createWriteStream, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { JobEvent, StartJob, StopJob } from '@nuri/contracts';

/**
 * Runs jobs as real child processes, one process group each, and reports `started` and
 * `exited` events through `onEvent`.
 *
 * Environment of a job (nothing else from the agent leaks in):
 *   PATH  = the run-as user's sane default (`DEFAULT_PATH`), unless the job sets PATH
 *   HOME  = the run-as user's home if known, else the job's working dir, else the job dir
 *   USER, LOGNAME = the run-as user's name, when the agent runs jobs as another user
 *   LANG  = C.UTF-8 unless the job sets it
 *   ...the job's own env (may override the above)...
 *   CUDA_VISIBLE_DEVICES = the job's GPU indices, comma-separated (forced)
 *   NURI_JOB_ID          = the job id (forced)
 */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export type JobExitCause = Extract<JobEvent, { kind: 'exited' }>['cause'];

export interface RunAs {
  uid: number;
  gid: number;
  user?: string;
  home?: string;
}

export interface JobRunnerOptions {
  /** Per-job directory root: `<workDir>/jobs/<jobId>/output.log`. */
  workDir: string;
  /** Bytes of combined stdout+stderr kept per job; the rest is discarded (counted in the log). */
  logCapBytes?: number;
  /** Used when a start message carries no grace (it always does on the wire) and for stopAll. */
  defaultGraceSeconds?: number;
  /** Run jobs as this user when the agent is root. Ignored (with a warning) otherwise. */
  runAs?: RunAs;
  onEvent: (event: JobEvent) => void;
  log?: (msg: string) => void;
}

interface Running {
  jobId: string;
  child: ChildProcess;
  pid: number;
  gpuIndices: number[];
  attempt?: number;
  timer?: NodeJS.Timeout;
  killTimer?: NodeJS.Timeout;
  /** Set once the agent decided to end it; the first cause wins. */
  ending?: { cause: JobExitCause; message?: string; deadline: number };
  done: Promise<void>;
}

const SAFE_JOB_ID = /^[A-Za-z0-9._-]{1,128}$/;

export class JobRunner {
  private readonly jobs = new Map<string, Running>();
  private readonly logCap: number;

  constructor(private readonly opts: JobRunnerOptions) {
    this.logCap = opts.logCapBytes ?? 64 * 1024 * 1024;
  }

  /** Attempt of each running job that was started with one. */
  attempts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const j of this.jobs.values()) if (j.attempt !== undefined) out[j.jobId] = j.attempt;
    return out;
  }

  /** Job ids with a live process. */
  running(): string[] {
    return [...this.jobs.keys()];
  }

  /** GPU indices in use by running jobs. */
  busyGpus(): Set<number> {
    const s = new Set<number>();
    for (const j of this.jobs.values()) for (const g of j.gpuIndices) s.add(g);
    return s;
  }

  isRunning(jobId: string): boolean {
    return this.jobs.has(jobId);
  }

  logPath(jobId: string): string {
    return join(this.opts.workDir, 'jobs', jobId, 'output.log');
  }

  /** Starts a job; a second start for a running job id is ignored (returns false). */
  start(job: StartJob): boolean {
    if (this.jobs.has(job.jobId)) return false;
    const att = job.attempt !== undefined ? { attempt: job.attempt } : {};
    if (!SAFE_JOB_ID.test(job.jobId)) {
      this.opts.onEvent({ kind: 'exited', jobId: job.jobId, exitCode: null, signal: null, cause: 'spawn_failed', message: 'job id not usable as a directory name', ...att });
      return false;
    }
    const dir = join(this.opts.workDir, 'jobs', job.jobId);
    let out: WriteStream;
    const runAs = this.effectiveRunAs();
    try {
      mkdirSync(dir, { recursive: true });
      // The job's own directory (its default cwd and HOME) belongs to the user it runs as;
      // the log stays the agent's, so a job cannot rewrite or grow it past the cap.
      if (runAs) chownSync(dir, runAs.uid, runAs.gid);
      out = createWriteStream(join(dir, 'output.log'), { flags: 'a' });
    } catch (e) {
      this.opts.onEvent({ kind: 'exited', jobId: job.jobId, exitCode: null, signal: null, cause: 'spawn_failed', message: `log: ${(e as Error).message}`, ...att });
      return false;
    }
    out.on('error', () => undefined);

    const env: Record<string, string> = {
      PATH: DEFAULT_PATH,
      HOME: runAs?.home ?? job.workingDir ?? dir,
      LANG: 'C.UTF-8',
      ...(runAs?.user ? { USER: runAs.user, LOGNAME: runAs.user } : {}),
      ...job.env,
      CUDA_VISIBLE_DEVICES: job.gpuIndices.join(','),
      NURI_JOB_ID: job.jobId,
    };

    let child: ChildProcess;
    try {
      child = spawn(job.command[0], job.command.slice(1), {
        detached: true,
        env,
        cwd: job.workingDir ?? dir,
        stdio: ['ignore', 'pipe', 'pipe'],
        shell: false,
        ...(runAs ? { uid: runAs.uid, gid: runAs.gid } : {}),
      });
    } catch (e) {
      out.end();
      this.opts.onEvent({ kind: 'exited', jobId: job.jobId, exitCode: null, signal: null, cause: 'spawn_failed', message: (e as Error).message, ...att });
      return false;
    }

    let written = 0;
    let truncated = false;
    const sink = (chunk: Buffer) => {
      if (written >= this.logCap) {
        if (!truncated) {
          truncated = true;
          out.write(`\n[nuri-agent: log cap of ${this.logCap} bytes reached, further output discarded]\n`);
        }
        return;
      }
      const room = this.logCap - written;
      const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
      written += part.length;
      out.write(part);
    };
    child.stdout?.on('data', sink);
    child.stderr?.on('data', sink);

    let resolveDone!: () => void;
    const done = new Promise<void>((r) => (resolveDone = r));

    child.once('error', (err: NodeJS.ErrnoException) => {
      // spawn failure (ENOENT, EACCES, bad cwd): no pid, no 'exit'.
      if (child.pid !== undefined && this.jobs.has(job.jobId)) return; // runtime error after start: 'exit' follows
      this.jobs.delete(job.jobId);
      out.end();
      this.opts.onEvent({ kind: 'exited', jobId: job.jobId, exitCode: null, signal: null, cause: 'spawn_failed', message: `${err.code ?? ''} ${err.message}`.trim().slice(0, 2000), ...att });
      resolveDone();
    });

    if (child.pid === undefined) {
      // 'error' arrives on next tick and reports spawn_failed.
      return true;
    }
    const pid = child.pid;
    const entry: Running = { jobId: job.jobId, child, pid, gpuIndices: job.gpuIndices, attempt: job.attempt, done };
    this.jobs.set(job.jobId, entry);
    this.opts.onEvent({ kind: 'started', jobId: job.jobId, pid, ...att });

    entry.timer = setTimeout(() => this.terminate(entry, job.graceSeconds, 'timeout', `time limit of ${job.timeLimitSeconds}s reached`), job.timeLimitSeconds * 1000);
    entry.timer.unref?.();

    child.once('exit', (code, signal) => {
      clearTimeout(entry.timer);
      const finish = async () => {
        clearTimeout(entry.killTimer);
        // Fixed now: a stop() arriving while the pipes drain is a no-op.
        const ending: NonNullable<Running['ending']> = (entry.ending ??= { cause: 'exit', deadline: Date.now() });
        // The job is over: whatever is left of its process group goes with it.
        killGroup(pid, 'SIGKILL');
        // 'exit' can come before the last output: drain the pipes (bounded), flush the log,
        // so the log is complete when the exit is reported.
        await Promise.race([
          Promise.all([child.stdout, child.stderr].map((s) => (s && !s.destroyed && !s.readableEnded ? new Promise((r) => s.once('close', r)) : undefined))),
          new Promise((r) => setTimeout(r, 2000)),
        ]);
        await new Promise<void>((r) => out.end(() => r()));
        this.jobs.delete(job.jobId);
        const cause: JobExitCause = ending.cause;
        this.opts.onEvent({
          kind: 'exited',
          jobId: job.jobId,
          exitCode: code,
          signal: signal ?? null,
          cause,
          ...(ending.message ? { message: ending.message } : {}),
          ...att,
        });
        resolveDone();
      };
      if (entry.ending && groupAlive(pid)) {
        // Leader gone, others still in the group: they get the rest of the grace period.
        const wait = Math.max(0, entry.ending.deadline - Date.now());
        const poll = setInterval(() => {
          if (!groupAlive(pid)) {
            clearInterval(poll);
            clearTimeout(hard);
            void finish();
          }
        }, 50);
        const hard = setTimeout(() => {
          clearInterval(poll);
          void finish();
        }, wait);
      } else void finish();
    });
    return true;
  }

  /** Stops a running job (SIGTERM to its group, grace, SIGKILL). False when not running. */
  stop(msg: Pick<StopJob, 'jobId' | 'reason' | 'graceSeconds'>): boolean {
    const entry = this.jobs.get(msg.jobId);
    if (!entry) return false;
    this.terminate(entry, msg.graceSeconds, 'cancelled', `stopped by server: ${msg.reason}`);
    return true;
  }

  /** Resolves when the job is no longer running (immediately when unknown). */
  async waitFor(jobId: string): Promise<void> {
    await this.jobs.get(jobId)?.done;
  }

  /** Stops every job and waits for them (agent shutdown). */
  async stopAll(reason = 'agent shutting down', graceSeconds = this.opts.defaultGraceSeconds ?? 10): Promise<void> {
    const all = [...this.jobs.values()];
    for (const e of all) this.terminate(e, graceSeconds, 'cancelled', reason);
    await Promise.all(all.map((e) => e.done));
  }

  private terminate(entry: Running, graceSeconds: number, cause: JobExitCause, message: string): void {
    if (entry.ending) return;
    clearTimeout(entry.timer);
    entry.ending = { cause, message, deadline: Date.now() + graceSeconds * 1000 };
    killGroup(entry.pid, 'SIGTERM');
    entry.killTimer = setTimeout(() => killGroup(entry.pid, 'SIGKILL'), graceSeconds * 1000);
  }

  private effectiveRunAs(): RunAs | undefined {
    const ra = this.opts.runAs;
    if (!ra) return undefined;
    if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
      this.opts.log?.('runAs configured but the agent is not root: jobs run as the agent user');
      return undefined;
    }
    return ra;
  }
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    /* group already gone */
  }
}

/** True while any process of the group still exists (zombies count until reaped). */
export function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
