import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync } from 'node:fs';

/**
 * A uid (and a gid of the same number) per job, from a configured range, so no two jobs on
 * a node — and so no two tenants — ever share a uid while they run: one cannot signal,
 * ptrace, read /proc/<pid>/environ of, or write the files of another. No /etc/passwd entry
 * is needed; ids the node's /etc/passwd or /etc/group already uses are never handed out.
 *
 * The uid is derived from the job id (stable: a requeued job gets the same one unless it is
 * taken), skipping uids of running jobs and uids that still own a process (an orphan of a
 * crashed agent run, another agent's job).
 */
export interface UidRange {
  first: number;
  last: number;
}

/** `200000-265535` -> {first, last}; throws a readable error otherwise. */
export function parseUidRange(text: string): UidRange {
  const m = /^\s*(\d+)\s*-\s*(\d+)\s*$/.exec(text);
  if (!m) throw new Error('must look like 200000-265535');
  const first = Number(m[1]);
  const last = Number(m[2]);
  if (first < 1000) throw new Error('must start at 1000 or above (system and login users live below)');
  if (last < first) throw new Error('the end must not be below the start');
  if (last > 0xfffffffe - 1) throw new Error('must end below 4294967294');
  return { first, last };
}

/** Ids named in /etc/passwd (uids) and /etc/group (gids): never given to a job. */
function systemIds(): Set<number> {
  const ids = new Set<number>();
  for (const [file, col] of [
    ['/etc/passwd', 2],
    ['/etc/group', 2],
  ] as const) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n')) {
      const id = Number(line.split(':')[col]);
      if (line && Number.isInteger(id)) ids.add(id);
    }
  }
  return ids;
}

/** Owners of the live processes (the owner of /proc/<pid> is the process's uid). */
export function processesByUid(): Map<number, number[]> {
  const out = new Map<number, number[]>();
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const n of names) {
    if (!/^\d+$/.test(n)) continue;
    try {
      const uid = statSync(`/proc/${n}`).uid;
      const list = out.get(uid);
      if (list) list.push(Number(n));
      else out.set(uid, [Number(n)]);
    } catch {
      /* exited */
    }
  }
  return out;
}

/**
 * Live processes (zombies aside) whose real, effective or saved uid is `uid` (from
 * /proc/<pid>/status: a setuid binary a job ran keeps the job's real uid, and its /proc
 * entry belongs to root).
 */
export function pidsOfUid(uid: number): number[] {
  const out: number[] = [];
  for (const [owner, pids] of processesByUid()) {
    if (owner !== uid && owner !== 0) continue;
    for (const pid of pids) {
      try {
        const status = readFileSync(`/proc/${pid}/status`, 'utf8');
        if (/^State:\s+[ZX]/m.test(status)) continue; // dead, waiting to be reaped
        const m = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(status);
        if (m && [m[1], m[2], m[3]].some((u) => Number(u) === uid)) out.push(pid);
      } catch {
        /* exited */
      }
    }
  }
  return out;
}

export class UidAllocator {
  private readonly reserved: Set<number>;

  constructor(readonly range: UidRange) {
    this.reserved = systemIds();
  }

  get size(): number {
    return this.range.last - this.range.first + 1;
  }

  contains(uid: number): boolean {
    return uid >= this.range.first && uid <= this.range.last && !this.reserved.has(uid);
  }

  /** The uid for a job: derived from its id, the next free one on a collision. */
  pick(jobId: string, inUse: Set<number>): number {
    const h = createHash('sha256').update(jobId).digest();
    const start = Number(h.readBigUInt64BE(0) % BigInt(this.size));
    const owners = processesByUid();
    for (let i = 0; i < this.size; i++) {
      const uid = this.range.first + ((start + i) % this.size);
      if (this.reserved.has(uid) || inUse.has(uid) || owners.has(uid)) continue;
      return uid;
    }
    throw new Error(`no free uid in ${this.range.first}-${this.range.last}`);
  }
}
