import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * One cgroup per job, on cgroup v2 (the unified hierarchy) or on the v1 hierarchies.
 *
 * Layout: `<hierarchy>/<the agent's own cgroup>/nuri/<scope>/job-<jobId>`, where `scope` is
 * stable per agent (a hash of its work dir), so a restarted agent finds the cgroups its
 * previous run left and kills them. Nesting under the agent's own cgroup keeps the jobs
 * inside whatever the node's service manager gave the agent (run it with `Delegate=yes`).
 *
 * v1: the job is tracked by every hierarchy it is placed in (freezer, pids, memory,
 * devices); at its end the freezer cgroup is frozen, every task SIGKILLed, thawed, and the
 * cgroups removed once empty. v2: `cgroup.kill`.
 */

export type CgroupVersion = 'v1' | 'v2';
export type V1Controller = 'freezer' | 'pids' | 'memory' | 'devices';
const V1_CONTROLLERS: V1Controller[] = ['freezer', 'pids', 'memory', 'devices'];
export interface CgroupLimits {
  /** Most tasks (processes and threads) the job may have; undefined: no limit. */
  pidsMax?: number;
  /** Memory limit in bytes; undefined: no limit. */
  memoryBytes?: number;
  /** v1 devices rules: written after `a` is denied (whitelist). Undefined: devices unconstrained. */
  deviceAllow?: string[];
}

export interface CgroupFeatures {
  /** pids.max can be set. */
  pids: boolean;
  /** memory limits can be set. */
  memory: boolean;
  /** device access can be restricted (v1 devices controller; v2 would need eBPF). */
  devices: boolean;
  /** the job can be frozen before it is killed (v1 freezer; v2's cgroup.kill needs none). */
  freezer: boolean;
}

type Log = (msg: string) => void;

const errMsg = (e: unknown) => (e as NodeJS.ErrnoException).code ?? (e as Error).message;

/** The agent's own cgroup path in each hierarchy, from /proc/self/cgroup. */
export function ownCgroups(text = readFileSync('/proc/self/cgroup', 'utf8')): { v2?: string; v1: Map<string, string> } {
  const v1 = new Map<string, string>();
  let v2: string | undefined;
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    if (m[1] === '0' && m[2] === '') v2 = m[3]!;
    else for (const c of m[2]!.split(',')) v1.set(c, m[3]!);
  }
  return { v2, v1 };
}

/** `job-<jobId>.<unique>` -> jobId (job ids may contain dots: the suffix is after the last). */
function jobOfName(name: string): string | undefined {
  const m = /^job-(.+)\.[a-z0-9]+$/.exec(name);
  return m ? m[1]! : undefined;
}

/**
 * The agent's own cgroup path without a trailing slash ('' for the root), and without the
 * `nuri-agent` leaf the agent moves itself into on v2 (or systemd's `DelegateSubgroup=`
 * put it in): the jobs' `nuri` subtree sits beside that leaf, the same on every start.
 */
const sanitize = (p: string) => {
  const path = p === '/' ? '' : p.replace(/\/+$/, '');
  return path.endsWith('/nuri-agent') ? path.slice(0, -'/nuri-agent'.length) : path;
};
const SAFE_NAME = /^[A-Za-z0-9._-]{1,200}$/;

function readPids(file: string): number[] {
  try {
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map(Number)
      .filter((n) => Number.isInteger(n) && n > 0);
  } catch {
    return [];
  }
}

function signalPids(pids: number[], signal: NodeJS.Signals): void {
  for (const p of pids) {
    try {
      process.kill(p, signal);
    } catch {
      /* gone */
    }
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A job's cgroup (one directory per v1 hierarchy, or one v2 directory). */
export class JobCgroup {
  constructor(
    readonly version: CgroupVersion,
    /** Directories of the job's cgroup; the first is the one that tracks membership. */
    readonly dirs: string[],
    private readonly freezerDir: string | undefined,
    private readonly onRemoved: () => void,
  ) {}

  /** Files the job's first process is placed through (its pid written into each). */
  procsFiles(): string[] {
    return this.dirs.map((d) => join(d, 'cgroup.procs'));
  }

  /** Places a process in every hierarchy of the job's cgroup (throws when any refuses). */
  place(pid: number): void {
    for (const f of this.procsFiles()) writeFileSync(f, `${pid}\n`);
  }

  /** Processes in the cgroup now (thread-group ids). */
  pids(): number[] {
    const all = new Set<number>();
    for (const d of this.dirs) for (const p of readPids(join(d, 'cgroup.procs'))) all.add(p);
    return [...all];
  }

  /** True while any process is in the cgroup. */
  populated(): boolean {
    if (this.version === 'v2') {
      try {
        return /^populated 1$/m.test(readFileSync(join(this.dirs[0]!, 'cgroup.events'), 'utf8'));
      } catch {
        return false;
      }
    }
    return this.pids().length > 0;
  }

  /** Sends a signal to every process in the cgroup (graceful stop: SIGTERM). */
  signal(signal: NodeJS.Signals): void {
    signalPids(this.pids(), signal);
  }

  /**
   * Kills everything in the cgroup, waits (bounded) until it is empty and removes it.
   * Resolves true when the cgroup is gone, false when something could not be killed in time.
   */
  async kill(timeoutMs = 10_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    if (this.version === 'v2') {
      try {
        writeFileSync(join(this.dirs[0]!, 'cgroup.kill'), '1');
      } catch {
        this.signal('SIGKILL');
      }
    } else {
      // Frozen tasks cannot fork, so one pass of SIGKILL reaches them all; the kill is
      // delivered when they are thawed.
      const frozen = await this.freeze(Math.min(2000, timeoutMs / 2));
      for (let i = 0; i < 3; i++) this.signal('SIGKILL');
      if (frozen) this.write(this.freezerDir!, 'freezer.state', 'THAWED');
    }
    while (this.populated()) {
      if (Date.now() > deadline) return false;
      this.signal('SIGKILL'); // without a freezer, what forked meanwhile
      await sleep(20);
    }
    return this.remove(deadline);
  }

  private async freeze(timeoutMs: number): Promise<boolean> {
    if (!this.freezerDir || !this.write(this.freezerDir, 'freezer.state', 'FROZEN')) return false;
    const end = Date.now() + timeoutMs;
    for (;;) {
      let state: string;
      try {
        state = readFileSync(join(this.freezerDir, 'freezer.state'), 'utf8').trim();
      } catch {
        return false;
      }
      // Still FREEZING at the deadline: kill anyway (what forks meanwhile is killed by the
      // loop that waits for the cgroup to empty), thaw after.
      if (state === 'FROZEN' || Date.now() > end) return true;
      await sleep(1);
    }
  }

  private write(dir: string, file: string, value: string): boolean {
    try {
      writeFileSync(join(dir, file), value);
      return true;
    } catch {
      return false;
    }
  }

  private async remove(deadline: number): Promise<boolean> {
    for (const d of this.dirs) {
      for (;;) {
        try {
          rmdirSync(d);
          break;
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') break;
          if (Date.now() > deadline) return false;
          await sleep(20); // EBUSY: the last task is still exiting
        }
      }
    }
    this.onRemoved();
    return true;
  }
}

interface Hierarchy {
  /** Directory of `nuri/<scope>` in this hierarchy. */
  scopeDir: string;
}

export interface CgroupManagerOptions {
  /** Where the hierarchies are mounted (default /sys/fs/cgroup). */
  root?: string;
  /** 'auto' (default): v2 where the unified hierarchy has pids and memory, else v1, else v2 without controllers. */
  mode?: 'auto' | 'v1' | 'v2';
  /** Stable per agent: the directory under `nuri/` that holds this agent's jobs. */
  scope: string;
  log?: Log;
}

/**
 * Finds a writable cgroup hierarchy and creates, kills and removes job cgroups in it.
 * `CgroupManager.probe` returns undefined (with the reasons logged) where none is usable.
 */
export class CgroupManager {
  private static seq = 0;

  private constructor(
    readonly version: CgroupVersion,
    readonly features: CgroupFeatures,
    /** v1: by controller; v2: one entry under 'unified'. */
    private readonly hier: Map<string, Hierarchy>,
    /** Human summary for logs and the node view. */
    readonly detail: string,
  ) {}

  static probe(opts: CgroupManagerOptions): { manager?: CgroupManager; reasons: string[] } {
    const root = opts.root ?? '/sys/fs/cgroup';
    const mode = opts.mode ?? 'auto';
    const reasons: string[] = [];
    if (!SAFE_NAME.test(opts.scope)) throw new Error(`cgroup scope ${JSON.stringify(opts.scope)} is not a plain name`);
    let own: ReturnType<typeof ownCgroups>;
    try {
      own = ownCgroups();
    } catch (e) {
      return { reasons: [`/proc/self/cgroup unreadable: ${errMsg(e)}`] };
    }
    const tryV2 = (requireControllers: boolean) => {
      const r = CgroupManager.probeV2(root, own.v2, opts.scope, requireControllers);
      if ('reason' in r) reasons.push(`v2: ${r.reason}`);
      return 'manager' in r ? r.manager : undefined;
    };
    const tryV1 = () => {
      const r = CgroupManager.probeV1(root, own.v1, opts.scope);
      if ('reason' in r) reasons.push(`v1: ${r.reason}`);
      return 'manager' in r ? r.manager : undefined;
    };
    let manager: CgroupManager | undefined;
    if (mode === 'v2') manager = tryV2(false);
    else if (mode === 'v1') manager = tryV1();
    else manager = tryV2(true) ?? tryV1() ?? tryV2(false);
    return { manager, reasons: [...new Set(reasons)] };
  }

  private static probeV1(root: string, own: Map<string, string>, scope: string): { manager: CgroupManager } | { reason: string } {
    const hier = new Map<string, Hierarchy>();
    const why: string[] = [];
    for (const c of V1_CONTROLLERS) {
      const mount = join(root, c);
      // `tasks` exists only in v1 hierarchies (the root cgroup lacks the controller's own files).
      if (!existsSync(join(mount, 'tasks'))) {
        why.push(`${c}: no hierarchy at ${mount}`);
        continue;
      }
      const ownPath = own.get(c);
      if (ownPath === undefined) {
        why.push(`${c}: not in /proc/self/cgroup`);
        continue;
      }
      const scopeDir = join(mount, sanitize(ownPath), 'nuri', scope);
      const probe = join(scopeDir, `probe-${process.pid}`);
      try {
        mkdirSync(scopeDir, { recursive: true });
        mkdirSync(probe);
        rmdirSync(probe);
      } catch (e) {
        why.push(`${c}: cannot create cgroups in ${scopeDir} (${errMsg(e)})`);
        continue;
      }
      hier.set(c, { scopeDir });
    }
    // Membership needs one hierarchy; the freezer or pids one is what a kill leans on.
    if (!hier.has('freezer') && !hier.has('pids')) return { reason: why.join('; ') || 'no freezer or pids hierarchy' };
    const features: CgroupFeatures = { pids: hier.has('pids'), memory: hier.has('memory'), devices: hier.has('devices'), freezer: hier.has('freezer') };
    const detail = `cgroup v1 (${[...hier.keys()].join(', ')}) under ${[...hier.values()][0]!.scopeDir}${why.length ? `; missing: ${why.join('; ')}` : ''}`;
    return { manager: new CgroupManager('v1', features, hier, detail) };
  }

  private static probeV2(root: string, ownPath: string | undefined, scope: string, requireControllers: boolean): { manager: CgroupManager } | { reason: string } {
    const mount = existsSync(join(root, 'cgroup.controllers')) ? root : existsSync(join(root, 'unified', 'cgroup.controllers')) ? join(root, 'unified') : undefined;
    if (!mount) return { reason: `no unified hierarchy at ${root} or ${join(root, 'unified')}` };
    if (ownPath === undefined) return { reason: 'not in /proc/self/cgroup' };
    const own = join(mount, sanitize(ownPath));
    const nuri = join(own, 'nuri');
    const scopeDir = join(nuri, scope);
    const readList = (f: string) => {
      try {
        return readFileSync(f, 'utf8').trim().split(/\s+/).filter(Boolean);
      } catch {
        return [];
      }
    };
    const available = readList(join(own, 'cgroup.controllers'));
    const wanted = ['pids', 'memory'].filter((c) => available.includes(c));
    if (requireControllers && wanted.length < 2) return { reason: `the unified hierarchy at ${own} lacks ${['pids', 'memory'].filter((c) => !wanted.includes(c)).join(' and ')}` };
    try {
      mkdirSync(scopeDir, { recursive: true });
    } catch (e) {
      return { reason: `cannot create cgroups in ${scopeDir} (${errMsg(e)})` };
    }
    const enable = (dir: string) => {
      const have = readList(join(dir, 'cgroup.subtree_control'));
      const missing = wanted.filter((c) => !have.includes(c));
      if (missing.length) writeFileSync(join(dir, 'cgroup.subtree_control'), missing.map((c) => `+${c}`).join(' '));
    };
    let enabled = wanted.length > 0;
    if (enabled) {
      try {
        try {
          enable(own);
        } catch (e) {
          // "No internal processes": a non-root cgroup with processes cannot hand controllers
          // to children. The agent's cgroup is delegated to it (systemd `Delegate=yes`): move
          // its processes (the agent and what it started, e.g. the XID reader) into a leaf
          // `nuri-agent` beside the jobs' `nuri`, and try again.
          if ((e as NodeJS.ErrnoException).code !== 'EBUSY') throw e;
          const leaf = join(own, 'nuri-agent');
          mkdirSync(leaf, { recursive: true });
          for (const pid of readPids(join(own, 'cgroup.procs'))) {
            try {
              writeFileSync(join(leaf, 'cgroup.procs'), `${pid}\n`);
            } catch {
              /* exited meanwhile */
            }
          }
          enable(own);
        }
        enable(nuri);
        enable(scopeDir);
      } catch (e) {
        if (requireControllers) return { reason: `cannot enable ${wanted.join(', ')} for children of ${own} (${errMsg(e)})` };
        enabled = false;
      }
    }
    const probe = join(scopeDir, `probe-${process.pid}`);
    try {
      mkdirSync(probe);
      const canKill = existsSync(join(probe, 'cgroup.kill'));
      rmdirSync(probe);
      if (!canKill) return { reason: 'no cgroup.kill (kernel before 5.14)' };
    } catch (e) {
      return { reason: `cannot create cgroups in ${scopeDir} (${errMsg(e)})` };
    }
    const has = (c: string) => enabled && readList(join(scopeDir, 'cgroup.subtree_control')).includes(c);
    const features: CgroupFeatures = { pids: has('pids'), memory: has('memory'), devices: false, freezer: false };
    const ctl = [features.pids && 'pids', features.memory && 'memory'].filter(Boolean).join(', ') || 'no controllers';
    const detail = `cgroup v2 (${ctl}; devices not enforced: v2 needs an eBPF device program, which the agent cannot load) under ${scopeDir}`;
    return { manager: new CgroupManager('v2', features, new Map([['unified', { scopeDir }]]), detail) };
  }

  private dirsOf(name: string): { dirs: string[]; freezer?: string } {
    if (this.version === 'v2') return { dirs: [join(this.hier.get('unified')!.scopeDir, name)] };
    // The first directory tracks membership: freezer if there is one, else pids.
    const order: V1Controller[] = ['freezer', 'pids', 'memory', 'devices'];
    const dirs = order.filter((c) => this.hier.has(c)).map((c) => join(this.hier.get(c)!.scopeDir, name));
    return { dirs, freezer: this.hier.has('freezer') ? join(this.hier.get('freezer')!.scopeDir, name) : undefined };
  }

  /**
   * Creates a cgroup for one start of a job, with its limits. Synchronous (the runner's
   * start is). Each start gets a fresh name, `job-<jobId>.<unique>`, so a leftover of an
   * earlier run still being killed never collides with it.
   */
  createSync(jobId: string, limits: CgroupLimits): JobCgroup {
    const name = `job-${jobId}.${Date.now().toString(36)}${(CgroupManager.seq++).toString(36)}`;
    if (!SAFE_NAME.test(name)) throw new Error('job id not usable as a cgroup name');
    const { dirs, freezer } = this.dirsOf(name);
    const made: string[] = [];
    try {
      for (const d of dirs) {
        mkdirSync(join(d, '..'), { recursive: true }); // the scope dir, removed when it emptied
        mkdirSync(d);
        made.push(d);
      }
      if (this.version === 'v1') {
        const dir = (c: V1Controller) => (this.hier.has(c) ? join(this.hier.get(c)!.scopeDir, name) : undefined);
        if (limits.pidsMax !== undefined && dir('pids')) writeFileSync(join(dir('pids')!, 'pids.max'), String(limits.pidsMax));
        if (limits.memoryBytes !== undefined && dir('memory')) {
          writeFileSync(join(dir('memory')!, 'memory.limit_in_bytes'), String(limits.memoryBytes));
          // Swap counts too where swap accounting exists (else the limit is swapped around).
          try {
            writeFileSync(join(dir('memory')!, 'memory.memsw.limit_in_bytes'), String(limits.memoryBytes));
          } catch {
            /* no swap accounting */
          }
        }
        if (limits.deviceAllow && dir('devices')) {
          const d = dir('devices')!;
          writeFileSync(join(d, 'devices.deny'), 'a');
          for (const rule of limits.deviceAllow) writeFileSync(join(d, 'devices.allow'), rule);
        }
      } else {
        const d = dirs[0]!;
        if (limits.pidsMax !== undefined && this.features.pids) writeFileSync(join(d, 'pids.max'), String(limits.pidsMax));
        if (limits.memoryBytes !== undefined && this.features.memory) {
          writeFileSync(join(d, 'memory.max'), String(limits.memoryBytes));
          try {
            writeFileSync(join(d, 'memory.swap.max'), '0');
          } catch {
            /* no swap controller */
          }
        }
      }
    } catch (e) {
      for (const d of made.reverse()) {
        try {
          rmdirSync(d);
        } catch {
          /* best effort */
        }
      }
      throw e;
    }
    return new JobCgroup(this.version, dirs, freezer, () => this.pruneScope());
  }

  /** The cgroups of a job that exist (leftovers of an earlier agent run, or the running one). */
  openAll(jobId: string): JobCgroup[] {
    const out: JobCgroup[] = [];
    for (const name of this.names()) {
      if (jobOfName(name) !== jobId) continue;
      const { dirs, freezer } = this.dirsOf(name);
      const present = dirs.filter((d) => existsSync(d));
      if (present.length) out.push(new JobCgroup(this.version, present, freezer && existsSync(freezer) ? freezer : undefined, () => this.pruneScope()));
    }
    return out;
  }

  /** Job ids with a cgroup under this agent's scope. */
  list(): string[] {
    return [...new Set([...this.names()].map(jobOfName).filter((j): j is string => j !== undefined))];
  }

  private names(): Set<string> {
    const names = new Set<string>();
    for (const h of this.hier.values()) {
      try {
        for (const n of readdirSync(h.scopeDir)) if (n.startsWith('job-')) names.add(n);
      } catch {
        /* no scope yet */
      }
    }
    return names;
  }

  /**
   * Removes the v1 scope directories once they hold no job (best effort; recreated on
   * demand). v2 keeps its scope: the controllers enabled in it would not come back with mkdir.
   */
  private pruneScope(): void {
    if (this.version === 'v2') return;
    for (const h of this.hier.values()) {
      try {
        rmdirSync(h.scopeDir);
      } catch {
        /* still holds jobs, or gone */
      }
    }
  }
}
