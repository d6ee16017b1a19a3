import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { JobEvent } from '@nuri/contracts';

export interface JournalEntry {
  /** Local id, unique within the journal file. */
  id: string;
  at: number;
  event: JobEvent;
}

/**
 * Append-only JSON-lines file of job events not yet acknowledged by the server. Each event
 * is appended and fsynced before it is sent; acknowledged ones are pruned by rewriting the
 * file (temp file, fsync, rename). A restarted agent reads it back and resends every entry
 * under its new stream, so exit codes survive agent crashes. Torn or unreadable lines (a
 * crash mid-append) are skipped.
 */
export class Journal {
  private entries: JournalEntry[] = [];
  private counter = 0;

  constructor(readonly path: string) {
    mkdirSync(dirname(path), { recursive: true });
  }

  load(): JournalEntry[] {
    this.entries = [];
    let torn = false;
    if (existsSync(this.path)) {
      for (const line of readFileSync(this.path, 'utf8').split('\n')) {
        if (!line.trim()) continue;
        try {
          const raw = JSON.parse(line) as JournalEntry;
          const event = JobEvent.parse(raw.event);
          if (typeof raw.id === 'string' && typeof raw.at === 'number') this.entries.push({ id: raw.id, at: raw.at, event });
        } catch {
          torn = true; // a crash mid-append
        }
      }
    }
    // Rewrite without the torn line, so the next append does not glue onto it.
    if (torn) writeAtomic(this.path, this.entries.map((e) => JSON.stringify(e) + '\n').join(''));
    return [...this.entries];
  }

  append(event: JobEvent, at = Date.now()): JournalEntry {
    const entry: JournalEntry = { id: `${process.pid}-${Date.now().toString(36)}-${(this.counter++).toString(36)}`, at, event };
    const fd = openSync(this.path, 'a', 0o600);
    try {
      writeSync(fd, JSON.stringify(entry) + '\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    this.entries.push(entry);
    return entry;
  }

  remove(ids: Iterable<string>): void {
    const drop = new Set(ids);
    if (drop.size === 0) return;
    const before = this.entries.length;
    this.entries = this.entries.filter((e) => !drop.has(e.id));
    if (this.entries.length === before) return;
    writeAtomic(this.path, this.entries.map((e) => JSON.stringify(e) + '\n').join(''));
  }

  all(): readonly JournalEntry[] {
    return this.entries;
  }

  /** Job ids whose `exited` event is still unacknowledged. */
  pendingExits(): Set<string> {
    return new Set(this.entries.filter((e) => e.event.kind === 'exited').map((e) => e.event.jobId));
  }

  /** Highest attempt among the job's unacknowledged exits (0 when they carry none), or undefined when none is pending. */
  pendingExitAttempt(jobId: string): number | undefined {
    let out: number | undefined;
    for (const e of this.entries)
      if (e.event.kind === 'exited' && e.event.jobId === jobId) out = Math.max(out ?? 0, e.event.attempt ?? 0);
    return out;
  }
}

/** A running job as recorded on disk: its process group and, when the start carried one, its attempt. */
export interface RunningEntry {
  pgid: number;
  attempt?: number;
}

/**
 * jobId -> process group (and attempt) of jobs running now, so a restarted agent can clean
 * up and report them `lost` for the right attempt. Reads the older format (jobId -> pgid) too.
 */
export class RunningState {
  constructor(readonly path: string) {
    mkdirSync(dirname(path), { recursive: true });
  }

  load(): Record<string, RunningEntry> {
    try {
      const raw = JSON.parse(readFileSync(this.path, 'utf8')) as Record<string, unknown>;
      const out: Record<string, RunningEntry> = {};
      const pid = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v > 1;
      for (const [k, v] of Object.entries(raw)) {
        if (pid(v)) out[k] = { pgid: v };
        else if (v && typeof v === 'object' && pid((v as RunningEntry).pgid)) {
          const a = (v as RunningEntry).attempt;
          out[k] = { pgid: (v as RunningEntry).pgid, ...(typeof a === 'number' && Number.isInteger(a) && a > 0 ? { attempt: a } : {}) };
        }
      }
      return out;
    } catch {
      return {};
    }
  }

  save(state: Record<string, RunningEntry>): void {
    writeAtomic(this.path, JSON.stringify(state));
  }
}

function writeAtomic(path: string, text: string): void {
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

/**
 * The last attempt of each job that ran on this node and ended (bounded, oldest forgotten
 * first), kept across agent restarts: a late or repeated start for an attempt that already
 * ran here is answered `lost` instead of running the job a second time.
 */
export class FinishedAttempts {
  private readonly map = new Map<string, number>();

  constructor(
    readonly path: string,
    private readonly max = 10_000,
  ) {
    mkdirSync(dirname(path), { recursive: true });
    try {
      const raw = JSON.parse(readFileSync(path, 'utf8')) as unknown;
      if (Array.isArray(raw))
        for (const e of raw)
          if (Array.isArray(e) && typeof e[0] === 'string' && typeof e[1] === 'number' && Number.isInteger(e[1]) && e[1] > 0) this.map.set(e[0], e[1]);
    } catch {
      /* none yet, or unreadable: start empty */
    }
  }

  get(jobId: string): number | undefined {
    return this.map.get(jobId);
  }

  record(jobId: string, attempt: number): void {
    if ((this.map.get(jobId) ?? 0) >= attempt) return;
    this.map.delete(jobId);
    this.map.set(jobId, attempt);
    while (this.map.size > this.max) this.map.delete(this.map.keys().next().value!);
    writeAtomic(this.path, JSON.stringify([...this.map]));
  }
}
