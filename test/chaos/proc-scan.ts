import { readdirSync, readFileSync, readlinkSync, rmdirSync } from 'node:fs';
import { sep } from 'node:path';

/** A live process of a job, as /proc shows it (the agent sets NURI_JOB_ID in every job's environment). */
export interface JobProcess {
  pid: number;
  pgid: number;
  jobId: string;
  /** GPU indices from CUDA_VISIBLE_DEVICES. */
  gpus: number[];
  cwd: string;
  /** The node whose agent started it: NURI_NODE when the agent sets it, else from the cwd under the run's agent dirs. */
  node: string | undefined;
}

/**
 * Every live (non-zombie) process whose environment carries NURI_JOB_ID and that belongs to
 * this run: its cwd is under `agentsDir`, or its job id is in `jobIds`. Reading another user's
 * /proc/<pid>/environ needs root (CI and this harness run as root); unreadable ones are skipped.
 */
export function scanJobProcesses(agentsDir: string, jobIds: ReadonlySet<string>): JobProcess[] {
  const out: JobProcess[] = [];
  let pids: string[];
  try {
    pids = readdirSync('/proc');
  } catch {
    return out;
  }
  const prefix = agentsDir.endsWith(sep) ? agentsDir : agentsDir + sep;
  for (const p of pids) {
    if (!/^\d+$/.test(p)) continue;
    let environ: Buffer;
    try {
      environ = readFileSync(`/proc/${p}/environ`);
    } catch {
      continue;
    }
    if (environ.indexOf('NURI_JOB_ID=') < 0) continue;
    const env = new Map<string, string>();
    for (const kv of environ.toString('utf8').split('\0')) {
      const i = kv.indexOf('=');
      if (i > 0) env.set(kv.slice(0, i), kv.slice(i + 1));
    }
    const jobId = env.get('NURI_JOB_ID');
    if (!jobId) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${p}/stat`, 'utf8');
    } catch {
      continue;
    }
    let cwd = '';
    try {
      cwd = readlinkSync(`/proc/${p}/cwd`);
    } catch {
      /* gone meanwhile, or not readable */
    }
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z' || fields[0] === 'X') continue;
    const pgid = Number(fields[2]);
    const mine = cwd.startsWith(prefix) || jobIds.has(jobId);
    if (!mine) continue;
    const node = env.get('NURI_NODE') ?? (cwd.startsWith(prefix) ? cwd.slice(prefix.length).split(sep)[0] : undefined);
    const cvd = env.get('CUDA_VISIBLE_DEVICES') ?? '';
    const gpus = cvd
      .split(',')
      .filter((s) => /^\d+$/.test(s))
      .map(Number);
    out.push({ pid: Number(p), pgid, jobId, gpus, cwd, node });
  }
  return out;
}

/** SIGKILLs every process of the given scan (their groups too). */
export function killJobProcesses(procs: readonly JobProcess[]): number {
  let n = 0;
  const own = ownPgid();
  for (const p of procs) {
    const targets = p.pgid > 1 && p.pgid !== own ? [-p.pgid, p.pid] : [p.pid];
    for (const target of targets) {
      try {
        process.kill(target, 'SIGCONT');
        process.kill(target, 'SIGKILL');
        n++;
      } catch {
        /* gone */
      }
    }
  }
  return n;
}

function ownPgid(): number {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
  } catch {
    return -1;
  }
}

/**
 * The agent-made cgroup scopes a process sits in (paths like `/nuri/<scope>`, one per agent
 * work dir), from /proc/<pid>/cgroup; empty when the agent uses none.
 */
export function cgroupScopesOf(pid: number): string[] {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  } catch {
    return [];
  }
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    const path = line.split(':').slice(2).join(':');
    const parts = path.split('/');
    const i = parts.indexOf('nuri');
    if (i >= 0 && parts[i + 1]) out.add(parts.slice(0, i + 2).join('/'));
  }
  return [...out];
}

/**
 * Removes the given cgroup scopes (and their empty job cgroups) from every mounted hierarchy,
 * once their processes are gone: an agent killed -9 cannot remove them itself. Best effort: a
 * cgroup that still has tasks, or is not there, is left alone.
 */
export function removeCgroupScopes(scopes: Iterable<string>, root = '/sys/fs/cgroup'): number {
  let removed = 0;
  let mounts: string[];
  try {
    mounts = [root, ...readdirSync(root).map((d) => `${root}/${d}`)];
  } catch {
    return 0;
  }
  for (const scope of scopes) {
    if (!/^(\/[A-Za-z0-9._@:-]+)*\/nuri\/[A-Za-z0-9._-]+$/.test(scope)) continue;
    for (const m of mounts) {
      const dir = `${m}${scope}`;
      let children: string[];
      try {
        children = readdirSync(dir, { withFileTypes: true })
          .filter((d) => d.isDirectory())
          .map((d) => d.name);
      } catch {
        continue;
      }
      for (const c of children) {
        try {
          rmdirSync(`${dir}/${c}`);
        } catch {
          /* still busy */
        }
      }
      try {
        rmdirSync(dir);
        removed++;
      } catch {
        /* still busy */
      }
    }
  }
  return removed;
}
