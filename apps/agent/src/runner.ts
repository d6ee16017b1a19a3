import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { type Stats, type WriteStream, createWriteStream, existsSync, fstatSync, mkdirSync, realpathSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import type { JobEvent, NodeIsolation, StartJob, StopJob } from '@nuri/contracts';
import {
  CgroupManager,
  DEFAULT_PIDS_MAX,
  type GateTools,
  type IsolationOptions,
  type JobCgroup,
  UidAllocator,
  agentDir,
  blockedAncestor,
  deviceAllowRules,
  findGpuDevices,
  gateArgs,
  gateTools,
  jobDir as prepareJobDir,
  openLog,
  pidsOfUid,
  processesByUid,
  releaseJobDir,
  resolveCommand,
  writeJobScript,
} from './isolation';
import { compatBinDir, installSlurmCompat, withCompatPath } from './slurm-compat';

/**
 * Runs jobs as real child processes and reports `started` and `exited` events through
 * `onEvent`. Each job gets (where the node allows; `isolation` says what holds):
 *   - its own cgroup, placed in before it runs anything (see isolation/spawn.ts), killed
 *     whole at its end (exit, stop, time limit, agent shutdown), with a pids limit, an
 *     optional memory limit per GPU, and only its own GPU devices (v1 devices controller);
 *     without a cgroup, its own process group, killed at the end;
 *   - its own uid and gid from `isolation.uidRange` when the agent is root (or the one
 *     `runAs` user), a job directory `<jobsDir>/<jobId>` of that uid with mode 0700 (its cwd
 *     unless it names a working dir, and its HOME), handed back to root when it ends;
 *   - its output written by the agent to `<workDir>/output/<jobId>/output.log`, in
 *     directories only the agent can write, opened without following symlinks.
 *
 * Environment of a job (nothing else from the agent leaks in):
 *   PATH  = the job's PATH, else `DEFAULT_PATH`; then (forced) `<workDir>/compat/bin` appended,
 *           where the agent keeps `srun` and `scontrol` for Slurm batch files (slurm-compat.ts)
 *   HOME  = the run-as user's home if configured (and absolute), else the job's directory (absolute)
 *   USER, LOGNAME = the run-as user's name, or `nuri-<uid>` for a uid from the range
 *   LANG  = C.UTF-8 unless the job sets it
 *   CUDA_DEVICE_ORDER = PCI_BUS_ID unless the job sets it (CUDA's GPU numbers = nvidia-smi's)
 *   ...the job's own env (may override the above)...
 *   CUDA_VISIBLE_DEVICES = the job's GPU indices, comma-separated (forced)
 *   NURI_JOB_ID          = the job id (forced)
 *   and, forced, where this rank stands in its job (`launchEnv`; a start without `launch`,
 *   from an older server, is rank 0 of 1): NURI_NODE (this node), NURI_NODE_RANK,
 *   NURI_NUM_NODES, NURI_NODELIST (names in rank order, comma-separated), NURI_GPUS_PER_NODE;
 *   for torch.distributed / torchrun: MASTER_ADDR (rank 0's address), MASTER_PORT,
 *   WORLD_SIZE (nodes x GPUs per node), NNODES, NODE_RANK, LOCAL_WORLD_SIZE; for scripts
 *   written for Slurm, as one task per node (the script is that task): SLURM_JOB_ID,
 *   SLURM_NNODES, SLURM_JOB_NUM_NODES, SLURM_NODEID, SLURM_PROCID (= node rank), SLURM_LOCALID=0,
 *   SLURM_NTASKS (= nodes), SLURM_NTASKS_PER_NODE=1, SLURM_TASKS_PER_NODE, SLURM_GPUS_ON_NODE,
 *   SLURM_JOB_NODELIST, SLURM_NODELIST, SLURMD_NODENAME (no SLURM_JOB_NAME or SLURM_SUBMIT_DIR:
 *   the start does not carry them); in an array: NURI_ARRAY_JOB_ID, NURI_ARRAY_TASK_ID,
 *   SLURM_ARRAY_JOB_ID, SLURM_ARRAY_TASK_ID.
 *
 * A batch script (`StartJob.script`) is written to `<jobDir>/nuri-script` (the job's uid,
 * 0500, never through a link) and run as `[script, ...command]`: the kernel reads its `#!`.
 */

/** The environment that places one rank in its job (forced over the job's own env). */
export function launchEnv(jobId: string, node: string, launch: NonNullable<StartJob['launch']>, array?: StartJob['array']): Record<string, string> {
  const nodes = launch.nodes.join(',');
  return {
    NURI_NODE: node,
    NURI_NODE_RANK: String(launch.rank),
    NURI_NUM_NODES: String(launch.nodes.length),
    NURI_NODELIST: nodes,
    NURI_GPUS_PER_NODE: String(launch.gpusPerNode),
    MASTER_ADDR: launch.masterAddr,
    MASTER_PORT: String(launch.masterPort),
    WORLD_SIZE: String(launch.nodes.length * launch.gpusPerNode),
    NNODES: String(launch.nodes.length),
    NODE_RANK: String(launch.rank),
    LOCAL_WORLD_SIZE: String(launch.gpusPerNode),
    SLURM_JOB_ID: jobId,
    SLURM_NNODES: String(launch.nodes.length),
    SLURM_JOB_NUM_NODES: String(launch.nodes.length),
    SLURM_NODEID: String(launch.rank),
    SLURM_PROCID: String(launch.rank),
    SLURM_LOCALID: '0',
    SLURM_NTASKS: String(launch.nodes.length),
    SLURM_NTASKS_PER_NODE: '1',
    SLURM_TASKS_PER_NODE: launch.nodes.length > 1 ? `1(x${launch.nodes.length})` : '1',
    SLURM_GPUS_ON_NODE: String(launch.gpusPerNode),
    SLURM_JOB_NODELIST: nodes,
    SLURM_NODELIST: nodes,
    SLURMD_NODENAME: node,
    ...(array
      ? { NURI_ARRAY_JOB_ID: array.id, NURI_ARRAY_TASK_ID: String(array.taskId), SLURM_ARRAY_JOB_ID: array.id, SLURM_ARRAY_TASK_ID: String(array.taskId) }
      : {}),
  };
}

/** Name of a batch script in its job's directory. */
export const SCRIPT_NAME = 'nuri-script';
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export type JobExitCause = Extract<JobEvent, { kind: 'exited' }>['cause'];

export interface RunAs {
  uid: number;
  gid: number;
  user?: string;
  home?: string;
}

export interface JobRunnerOptions {
  /** The agent's directory: job output in `<workDir>/output/<jobId>/output.log`. */
  workDir: string;
  /** The jobs' own directories (default `<workDir>/jobs`); other users must be able to pass through its parents. */
  jobsDir?: string;
  /** Bytes of combined stdout+stderr kept per job; the rest is discarded (counted in the log). */
  logCapBytes?: number;
  /** Used when a start message carries no grace (it always does on the wire) and for stopAll. */
  defaultGraceSeconds?: number;
  /** Run jobs as this user when the agent is root. Ignored (with a warning) otherwise. */
  runAs?: RunAs;
  /** cgroups, uid range, devices (see IsolationOptions). Default: cgroups where writable. */
  isolation?: IsolationOptions;
  /** This node's name (NURI_NODE, messages); default the host name. */
  nodeName?: string;
  /** Name of this agent's cgroup subtree (default: from a hash of workDir, stable across restarts). */
  cgroupScope?: string;
  onEvent: (event: JobEvent) => void;
  log?: (msg: string) => void;
}

interface Identity {
  uid: number;
  gid: number;
  user?: string;
  home?: string;
}

interface Running {
  jobId: string;
  child: ChildProcess;
  pid: number;
  gpuIndices: number[];
  attempt?: number;
  cgroup?: JobCgroup;
  /** The job's own uid from the range (not the shared runAs one). */
  ownUid?: number;
  dir: string;
  timer?: NodeJS.Timeout;
  killTimer?: NodeJS.Timeout;
  /** Set once the agent decided to end it; the first cause wins. */
  ending?: { cause: JobExitCause; message?: string; deadline: number };
  done: Promise<void>;
}

const SAFE_JOB_ID = /^[A-Za-z0-9._-]{1,128}$/;
const asRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;

export class JobRunner {
  private readonly jobs = new Map<string, Running>();
  private readonly logCap: number;
  private readonly workDir: string;
  private readonly jobsDir: string;
  private readonly outputDir: string;
  /** Where the Slurm shims are (slurm-compat.ts); appended to every job's PATH. */
  private readonly compatBin: string;
  private readonly runAs: RunAs | undefined;
  private readonly uids: UidAllocator | undefined;
  private readonly cgroups: CgroupManager | undefined;
  private readonly gate: GateTools | undefined;
  private readonly pidsMax: number | undefined;
  private readonly memoryPerGpu: number | undefined;
  private readonly deviceDir: string | undefined;
  private dirsReady = false;
  /** What this runner enforces (the agent's hello reports it). */
  readonly isolation: NodeIsolation;
  /** Jobs of an earlier run of this agent whose cgroups still had processes: killed at construction. */
  readonly leftovers: ReadonlySet<string>;
  /** Resolves when the leftovers' cgroups are killed and removed. */
  readonly leftoversKilled: Promise<void>;

  constructor(private readonly opts: JobRunnerOptions) {
    this.logCap = opts.logCapBytes ?? 64 * 1024 * 1024;
    // Real path: the agent's directories are opened without following symlinks.
    this.workDir = existsSync(opts.workDir) ? realpathSync(opts.workDir) : resolve(opts.workDir);
    this.jobsDir = resolve(opts.jobsDir ?? join(this.workDir, 'jobs'));
    this.outputDir = join(this.workDir, 'output');
    this.compatBin = compatBinDir(this.workDir);
    const iso = opts.isolation ?? {};
    const warn = (m: string) => opts.log?.(m);
    const root = asRoot();

    // Identity: a uid per job from the range, else the one runAs user, else the agent's.
    if (iso.uidRange && !root) warn('a uid range is configured but the agent is not root: jobs run as the agent user');
    this.uids = iso.uidRange && root ? new UidAllocator(iso.uidRange) : undefined;
    if (opts.runAs && !root) warn('runAs configured but the agent is not root: jobs run as the agent user');
    this.runAs = opts.runAs && root && !this.uids ? opts.runAs : undefined;
    if (opts.runAs && this.uids) warn('both runAs and a uid range are configured: each job gets its own uid from the range');

    // cgroups
    const reasons: string[] = [];
    if (iso.cgroup !== 'none') {
      this.gate = gateTools();
      if (!this.gate) reasons.push('no /bin/sh or /usr/bin/env to start jobs inside their cgroup');
      else {
        const scope = opts.cgroupScope ?? `w${createHash('sha256').update(this.workDir).digest('hex').slice(0, 16)}`;
        const r = CgroupManager.probe({ root: iso.cgroupRoot, mode: iso.cgroup === 'v1' || iso.cgroup === 'v2' ? iso.cgroup : 'auto', scope });
        this.cgroups = r.manager;
        if (!r.manager) reasons.push(...r.reasons);
      }
      if (!this.cgroups) warn(`no usable cgroup (${reasons.join('; ') || 'unknown'}): jobs are isolated by process group only, with no pids, memory or device limits`);
    }
    const f = this.cgroups?.features;
    this.pidsMax = iso.pidsMax === 0 ? undefined : (iso.pidsMax ?? DEFAULT_PIDS_MAX);
    this.memoryPerGpu = iso.memoryPerGpuBytes;
    this.deviceDir = iso.constrainDevices === false ? undefined : (iso.deviceDir ?? '/dev');
    if (this.cgroups && this.deviceDir && !f?.devices)
      warn(`GPU devices are not constrained: ${this.cgroups.version === 'v2' ? 'cgroup v2 needs an eBPF device program, which the agent cannot load' : 'no writable v1 devices hierarchy'}`);
    if (this.cgroups && this.memoryPerGpu && !f?.memory) warn('a memory limit per GPU is configured but no memory controller is usable: not enforced');
    const idWord = this.uids ? `own uid per job from ${iso.uidRange!.first}-${iso.uidRange!.last}` : this.runAs ? `every job as uid ${this.runAs.uid}` : 'jobs as the agent user';
    this.isolation = {
      cgroup: this.cgroups?.version ?? 'none',
      pids: !!f?.pids && this.pidsMax !== undefined,
      memory: !!f?.memory && this.memoryPerGpu !== undefined,
      devices: !!f?.devices && this.deviceDir !== undefined,
      uids: this.uids ? 'range' : this.runAs ? 'single' : 'none',
      detail: `${this.cgroups ? this.cgroups.detail : `no cgroup: ${reasons.join('; ') || 'disabled'}; a job's end kills its process group${this.uids ? ' and every process of its uid' : ''}`}; ${idWord}`.slice(0, 2000),
    };

    // What an earlier run of this agent left: every process in its job cgroups (and, without
    // cgroups, of uids from the range) is killed now; agent.ts reports those jobs 'lost'.
    const left = new Set<string>();
    const kills: Promise<unknown>[] = [];
    if (this.cgroups) {
      for (const jobId of this.cgroups.list()) {
        for (const cg of this.cgroups.openAll(jobId)) {
          if (cg.populated()) left.add(jobId);
          kills.push(cg.kill());
        }
      }
    } else if (this.uids) {
      for (const [uid, pids] of processesByUid()) if (this.uids.contains(uid)) for (const p of pids) signal(p, 'SIGKILL');
    }
    this.leftovers = left;
    this.leftoversKilled = Promise.all(kills).then(() => undefined);
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

  /** The directory of every job's output (`<outputRoot>/<jobId>/output.log`). */
  get outputRoot(): string {
    return this.outputDir;
  }

  /** Where the agent writes a job's output. */
  logPath(jobId: string): string {
    return join(this.outputDir, jobId, 'output.log');
  }

  /** A job's own directory (its default cwd and HOME). */
  jobDir(jobId: string): string {
    return join(this.jobsDir, jobId);
  }

  /** The uid a running job runs as (undefined: the agent's or the runAs user's). */
  uidOf(jobId: string): number | undefined {
    return this.jobs.get(jobId)?.ownUid;
  }

  /** The cgroup of a running job (tests, diagnostics). */
  cgroupOf(jobId: string): JobCgroup | undefined {
    return this.jobs.get(jobId)?.cgroup;
  }

  /**
   * Kills what is left of a job this agent does not run (an orphan of an earlier run): its
   * cgroups. Resolves true when something was still running in them.
   */
  async killLeftover(jobId: string): Promise<boolean> {
    if (this.jobs.has(jobId) || !this.cgroups) return false;
    let alive = false;
    for (const cg of this.cgroups.openAll(jobId)) {
      alive ||= cg.populated();
      await cg.kill();
    }
    return alive;
  }

  /** Starts a job; a second start for a running job id is ignored (returns false). */
  start(job: StartJob): boolean {
    if (this.jobs.has(job.jobId)) return false;
    const att = job.attempt !== undefined ? { attempt: job.attempt } : {};
    const failed = (message: string) => {
      this.opts.onEvent({ kind: 'exited', jobId: job.jobId, exitCode: null, signal: null, cause: 'spawn_failed', message: message.slice(0, 2000), ...att });
      return false;
    };
    if (!SAFE_JOB_ID.test(job.jobId)) return failed('job id not usable as a directory name');
    if (!job.command.length && job.script === undefined) return failed('empty command');
    const node = this.opts.nodeName ?? hostname();
    const dir = this.jobDir(job.jobId);
    const cwd = job.workingDir ?? dir;
    // Said plainly, before anything is made or spawned (a spawn would only say ENOENT).
    if (job.workingDir !== null) {
      const st = statOrUndefined(job.workingDir);
      if (!st) return failed(`working directory ${job.workingDir} does not exist on node ${node}`);
      if (!st.isDirectory()) return failed(`working directory ${job.workingDir} is not a directory on node ${node}`);
    }

    let who: Identity | undefined;
    let ownUid: number | undefined;
    try {
      if (this.uids) {
        const inUse = new Set([...this.jobs.values()].map((j) => j.ownUid).filter((u): u is number => u !== undefined));
        ownUid = this.uids.pick(job.jobId, inUse);
        who = { uid: ownUid, gid: ownUid, user: `nuri-${ownUid}` };
      } else who = this.runAs;
    } catch (e) {
      return failed(`uid: ${(e as Error).message}`);
    }

    let out: WriteStream;
    try {
      this.ensureDirs();
      // The job's own directory belongs to the user it runs as; the log is the agent's, in
      // a directory only the agent can write, so a job can neither redirect nor grow it.
      prepareJobDir(dir, who?.uid, who?.gid);
      agentDir(join(this.outputDir, job.jobId), 0o700);
      const fd = openLog(this.logPath(job.jobId));
      // A later attempt on this node appends (the earlier one's output stays readable), under a line saying so.
      const earlier = fstatSync(fd).size > 0;
      out = createWriteStream('', { fd });
      if (earlier) out.write(`\n[nuri-agent: attempt ${job.attempt ?? '?'} of job ${job.jobId} starts at ${new Date().toISOString()}]\n`);
    } catch (e) {
      return failed(`job directories: ${(e as Error).message}`);
    }
    out.on('error', () => undefined);

    let argv = job.command;
    if (job.script !== undefined) {
      const scriptPath = join(dir, SCRIPT_NAME);
      try {
        writeJobScript(scriptPath, job.script, who?.uid, who?.gid);
      } catch (e) {
        out.end();
        return failed(`batch script: ${(e as Error).message}`);
      }
      argv = [scriptPath, ...job.command];
    }
    const launch = job.launch ?? { rank: 0, nodes: [node], masterAddr: '127.0.0.1', masterPort: 29500, gpusPerNode: Math.max(1, job.gpuIndices.length) };

    const env: Record<string, string> = {
      HOME: who?.home && isAbsolute(who.home) ? who.home : dir,
      LANG: 'C.UTF-8',
      // CUDA numbers GPUs as nvidia-smi and /dev/nvidia<N> do (its default, fastest first,
      // could map CUDA_VISIBLE_DEVICES to a GPU whose device the job's cgroup denies).
      CUDA_DEVICE_ORDER: 'PCI_BUS_ID',
      ...(who?.user ? { USER: who.user, LOGNAME: who.user } : {}),
      ...job.env,
      PATH: withCompatPath(job.env.PATH ?? DEFAULT_PATH, this.compatBin),
      CUDA_VISIBLE_DEVICES: job.gpuIndices.join(','),
      NURI_JOB_ID: job.jobId,
      ...launchEnv(job.jobId, node, launch, job.array),
    };

    // In a cgroup: the gated shell (placed before it runs the job). Without: the job itself.
    let cgroup: JobCgroup | undefined;
    let file = argv[0]!;
    let args = argv.slice(1);
    let childEnv = env;
    if (this.cgroups && this.gate) {
      const found = resolveCommand(argv[0]!, env.PATH, cwd);
      if ('error' in found) {
        out.end();
        return failed(`${found.error} spawn ${argv[0]!}`);
      }
      try {
        cgroup = this.cgroups.createSync(job.jobId, this.limitsFor(job));
      } catch (e) {
        out.end();
        return failed(`cgroup: ${(e as Error).message}`);
      }
      file = this.gate.sh;
      args = gateArgs(this.gate, argv, env);
      childEnv = {};
    }

    let child: ChildProcess;
    try {
      child = spawn(file, args, {
        detached: true,
        env: childEnv,
        cwd,
        stdio: [cgroup ? 'pipe' : 'ignore', 'pipe', 'pipe'],
        shell: false,
        ...(who ? { uid: who.uid, gid: who.gid } : {}),
      });
    } catch (e) {
      out.end();
      void cgroup?.kill();
      return failed((e as Error).message);
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
    child.stdin?.on('error', () => undefined);

    let resolveDone!: () => void;
    const done = new Promise<void>((r) => (resolveDone = r));

    child.once('error', (err: NodeJS.ErrnoException) => {
      // spawn failure (ENOENT, EACCES, bad cwd): no pid, no 'exit'.
      if (child.pid !== undefined && this.jobs.has(job.jobId)) return; // runtime error after start: 'exit' follows
      this.jobs.delete(job.jobId);
      out.end();
      void cgroup?.kill();
      failed(`${err.code ?? ''} ${err.message}`.trim());
      resolveDone();
    });

    if (child.pid === undefined) {
      // 'error' arrives on next tick and reports spawn_failed.
      return true;
    }
    const pid = child.pid;

    if (cgroup) {
      // The shell waits on its stdin: place it, then let it exec the job.
      try {
        cgroup.place(pid);
        child.stdin!.end('\n');
      } catch (e) {
        const why = `cgroup: placing the job failed: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`;
        child.stdin?.destroy();
        signal(pid, 'SIGKILL');
        child.once('exit', () => {
          out.end();
          void cgroup!.kill();
          failed(why);
          resolveDone();
        });
        return true;
      }
    }

    const entry: Running = { jobId: job.jobId, child, pid, gpuIndices: job.gpuIndices, attempt: job.attempt, cgroup, ownUid, dir, done };
    this.jobs.set(job.jobId, entry);
    this.opts.onEvent({ kind: 'started', jobId: job.jobId, pid, ...att });

    entry.timer = setTimeout(() => this.terminate(entry, job.graceSeconds, 'timeout', `time limit of ${job.timeLimitSeconds}s reached`), job.timeLimitSeconds * 1000);
    entry.timer.unref?.();

    child.once('exit', (code, sig) => {
      clearTimeout(entry.timer);
      const finish = async () => {
        clearTimeout(entry.killTimer);
        // Fixed now: a stop() arriving while the pipes drain is a no-op.
        const ending: NonNullable<Running['ending']> = (entry.ending ??= { cause: 'exit', deadline: Date.now() });
        // The job is over: whatever is left of it (its cgroup, its process group, its uid's
        // processes) goes with it, daemonized children included.
        await this.killRest(entry);
        // 'exit' can come before the last output: drain the pipes (bounded), flush the log,
        // so the log is complete when the exit is reported.
        await Promise.race([
          Promise.all([child.stdout, child.stderr].map((s) => (s && !s.destroyed && !s.readableEnded ? new Promise((r) => s.once('close', r)) : undefined))),
          new Promise((r) => setTimeout(r, 2000)),
        ]);
        await new Promise<void>((r) => out.end(() => r()));
        if (who) {
          try {
            releaseJobDir(dir);
          } catch (e) {
            this.opts.log?.(`job ${job.jobId}: could not hand its directory back to root: ${(e as Error).message}`);
          }
        }
        this.jobs.delete(job.jobId);
        const cause: JobExitCause = ending.cause;
        this.opts.onEvent({
          kind: 'exited',
          jobId: job.jobId,
          exitCode: code,
          signal: sig ?? null,
          cause,
          ...(ending.message ? { message: ending.message } : {}),
          ...att,
        });
        resolveDone();
      };
      if (entry.ending && this.alive(entry)) {
        // Leader gone, others still there: they get the rest of the grace period.
        const wait = Math.max(0, entry.ending.deadline - Date.now());
        const poll = setInterval(() => {
          if (!this.alive(entry)) {
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

  /** Stops a running job (SIGTERM to all of it, grace, SIGKILL). False when not running. */
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
    this.signalAll(entry, 'SIGTERM');
    entry.killTimer = setTimeout(() => this.signalAll(entry, 'SIGKILL'), graceSeconds * 1000);
  }

  /** A signal to every process of the job: its group, and its cgroup or its uid's processes. */
  private signalAll(entry: Running, sig: NodeJS.Signals): void {
    killGroup(entry.pid, sig);
    if (entry.cgroup) entry.cgroup.signal(sig);
    else if (entry.ownUid !== undefined) for (const p of pidsOfUid(entry.ownUid)) signal(p, sig);
  }

  private alive(entry: Running): boolean {
    if (entry.cgroup) return entry.cgroup.populated();
    return groupAlive(entry.pid) || (entry.ownUid !== undefined && pidsOfUid(entry.ownUid).length > 0);
  }

  /** Kills everything left of a job whose leader exited, and removes its cgroup. */
  private async killRest(entry: Running): Promise<void> {
    killGroup(entry.pid, 'SIGKILL');
    if (entry.cgroup) {
      if (!(await entry.cgroup.kill())) this.opts.log?.(`job ${entry.jobId}: its cgroup could not be emptied and removed in time`);
      return;
    }
    if (entry.ownUid === undefined) return;
    // Without a cgroup, the job's own uid finds what left its process group (setsid).
    for (let i = 0; i < 100; i++) {
      const pids = pidsOfUid(entry.ownUid);
      if (!pids.length) return;
      for (const p of pids) signal(p, 'SIGKILL');
      await new Promise((r) => setTimeout(r, 20));
    }
    this.opts.log?.(`job ${entry.jobId}: processes of uid ${entry.ownUid} survived SIGKILL`);
  }

  private limitsFor(job: StartJob): { pidsMax?: number; memoryBytes?: number; deviceAllow?: string[] } {
    const f = this.cgroups!.features;
    return {
      ...(f.pids && this.pidsMax !== undefined ? { pidsMax: this.pidsMax } : {}),
      ...(f.memory && this.memoryPerGpu !== undefined ? { memoryBytes: this.memoryPerGpu * Math.max(1, job.gpuIndices.length) } : {}),
      ...(f.devices && this.deviceDir !== undefined ? { deviceAllow: deviceAllowRules(findGpuDevices(this.deviceDir), job.gpuIndices) } : {}),
    };
  }

  /** The agent's directories: work dir and output only the agent writes; jobs dir passable. */
  private ensureDirs(): void {
    if (this.dirsReady) return;
    mkdirSync(this.workDir, { recursive: true });
    agentDir(this.workDir, 0o711);
    agentDir(this.outputDir, 0o700);
    installSlurmCompat(this.workDir);
    mkdirSync(dirname(this.jobsDir), { recursive: true });
    agentDir(this.jobsDir, 0o711);
    this.dirsReady = true;
    const blocked = (this.uids || this.runAs) && blockedAncestor(this.jobsDir);
    if (blocked) this.opts.log?.(`jobs run unprivileged but ${blocked} (on the way to ${this.jobsDir}) lets no other user through: jobs cannot enter their directories (set jobsDir elsewhere)`);
  }
}

function statOrUndefined(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* gone */
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
