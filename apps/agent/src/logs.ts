import { constants } from 'node:fs';
import { lstat, open, readdir, rm, type FileHandle } from 'node:fs/promises';
import { lutimesSync } from 'node:fs';
import { join } from 'node:path';
import { WIRE_VERSION, type LogsOpen } from '@nuri/contracts';

/** Raw bytes per logs_data message (base64 makes it 64 KiB, well under the gateway's payload limit). */
export const LOG_CHUNK_BYTES = 48 * 1024;
/** Output requests one agent serves at once; more are refused (each holds a file open and a loop). */
export const MAX_LOG_REQUESTS = 32;
/** Stop reading while the connection holds this much unsent: a slow gateway link never fills memory. */
const HIGH_WATER_BYTES = 1024 * 1024;
const POLL_MS = 200;
const SAFE_JOB_ID = /^[A-Za-z0-9._-]{1,128}$/;

/** Where the answers of one connection go. */
export interface LogSink {
  send(message: object): void;
  /** Bytes queued on the connection, not yet sent (WebSocket.bufferedAmount). */
  buffered(): number;
  /** False once the connection is gone: the request ends silently. */
  open(): boolean;
}

export interface LogServerOptions {
  /** `<outputDir>/<jobId>/output.log`, as the runner writes it. */
  outputDir: string;
  /** Whether the job's process on this node still runs (the runner knows): a follow ends when it does not. */
  isRunning(jobId: string): boolean;
  /** Output of jobs that ended longer ago than this is removed (hours; may be fractional). Default 168. */
  retentionHours?: number;
  maxRequests?: number;
  log?: (msg: string) => void;
}

interface Request {
  id: string;
  sink: LogSink;
  closed: boolean;
  paused: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Serves `logs_open` from the files the runner writes: the last `tail` lines or all, in
 * chunks of at most 48 KiB, waiting while the connection's buffer is full or the gateway
 * paused the request; with `follow`, then what is appended until the job's process on this
 * node ended and the file is drained. Files are opened read-only without following a
 * symlink, and only regular files. Also removes output older than the retention.
 */
export class LogServer {
  private readonly requests = new Map<string, Request>();
  private readonly retentionMs: number;
  /** Jobs whose output the sweep removed (bounded): their requests are told it expired. */
  private readonly expired = new Set<string>();
  private sweepTimer?: NodeJS.Timeout;

  constructor(private readonly opts: LogServerOptions) {
    this.retentionMs = (opts.retentionHours ?? 168) * 3600_000;
  }

  get active(): number {
    return this.requests.size;
  }

  open(msg: LogsOpen, sink: LogSink): void {
    const end = (error?: string): void => {
      if (sink.open()) sink.send({ v: WIRE_VERSION, type: 'logs_end', requestId: msg.requestId, ...(error ? { error } : {}) });
    };
    if (this.requests.has(msg.requestId)) return end('duplicate request id');
    if (this.requests.size >= (this.opts.maxRequests ?? MAX_LOG_REQUESTS)) return end(`too many output requests on this node (${this.opts.maxRequests ?? MAX_LOG_REQUESTS} at once); try again`);
    const req: Request = { id: msg.requestId, sink, closed: false, paused: false };
    this.requests.set(msg.requestId, req);
    this.serve(msg, req)
      .then(() => end(), (e: Error) => end(e.message.slice(0, 2000)))
      .finally(() => this.requests.delete(msg.requestId));
  }

  close(requestId: string): void {
    const r = this.requests.get(requestId);
    if (r) r.closed = true;
  }

  pause(requestId: string, paused: boolean): void {
    const r = this.requests.get(requestId);
    if (r) r.paused = paused;
  }

  /** The connection went away: its requests stop (the gateway ends their readers). */
  closeAll(): void {
    for (const r of this.requests.values()) r.closed = true;
  }

  /** The job's process ended: its output's retention counts from now. */
  ended(jobId: string): void {
    if (!SAFE_JOB_ID.test(jobId)) return;
    const now = new Date();
    try {
      lutimesSync(join(this.opts.outputDir, jobId, 'output.log'), now, now);
    } catch {
      /* no output */
    }
  }

  /** Sweeps now, then at a period derived from the retention (at most hourly, at least every second). */
  startSweeping(): void {
    void this.sweep();
    const every = Math.min(3600_000, Math.max(1000, this.retentionMs / 4));
    this.sweepTimer = setInterval(() => void this.sweep(), every);
    this.sweepTimer.unref?.();
  }

  stop(): void {
    clearInterval(this.sweepTimer);
    this.closeAll();
  }

  /** Removes the output of jobs not running here whose output was last written before the retention. Returns the job ids removed. */
  async sweep(now = Date.now()): Promise<string[]> {
    let names: string[];
    try {
      names = await readdir(this.opts.outputDir);
    } catch {
      return [];
    }
    const removed: string[] = [];
    for (const jobId of names) {
      if (!SAFE_JOB_ID.test(jobId) || this.opts.isRunning(jobId)) continue;
      const dir = join(this.opts.outputDir, jobId);
      try {
        const st = await lstat(join(dir, 'output.log')).catch(() => lstat(dir));
        if (now - st.mtimeMs < this.retentionMs) continue;
        if (this.opts.isRunning(jobId)) continue; // started meanwhile
        await rm(dir, { recursive: true, force: true });
        removed.push(jobId);
        this.expired.add(jobId);
        if (this.expired.size > 10_000) this.expired.delete(this.expired.values().next().value!);
      } catch (e) {
        this.opts.log?.(`output retention: could not remove ${dir}: ${(e as Error).message}`);
      }
    }
    return removed;
  }

  private noOutput(jobId: string): Error {
    const hours = +(this.retentionMs / 3600_000).toPrecision(3);
    return new Error(
      this.expired.has(jobId)
        ? `the output of job ${jobId} on this node expired: it is kept ${hours} hours after the job ends`
        : `no output for job ${jobId} on this node (output is kept ${hours} hours after a job ends)`,
    );
  }

  private async serve(msg: LogsOpen, req: Request): Promise<void> {
    if (!SAFE_JOB_ID.test(msg.jobId)) throw this.noOutput(msg.jobId);
    let fh: FileHandle;
    try {
      fh = await open(join(this.opts.outputDir, msg.jobId, 'output.log'), constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch {
      throw this.noOutput(msg.jobId);
    }
    try {
      if (!(await fh.stat()).isFile()) throw this.noOutput(msg.jobId);
      let pos = msg.tail === undefined ? 0 : await tailOffset(fh, msg.tail);
      const buf = Buffer.allocUnsafe(LOG_CHUNK_BYTES);
      for (;;) {
        if (req.closed || !req.sink.open()) return;
        if (req.paused || req.sink.buffered() > HIGH_WATER_BYTES) {
          await sleep(20);
          continue;
        }
        // Whether the job still ran before this read: once it did not, a read that finds
        // nothing new means the file is complete (the runner flushes it before the job is gone).
        const over = !msg.follow || !this.opts.isRunning(msg.jobId);
        const { bytesRead } = await fh.read(buf, 0, LOG_CHUNK_BYTES, pos);
        if (bytesRead > 0) {
          pos += bytesRead;
          req.sink.send({ v: WIRE_VERSION, type: 'logs_data', requestId: req.id, data: buf.toString('base64', 0, bytesRead) });
          continue;
        }
        if (over) return;
        await sleep(POLL_MS);
      }
    } finally {
      await fh.close().catch(() => undefined);
    }
  }
}

/**
 * The offset where the last `lines` lines of the file begin (a final newline ends the last
 * line, it does not start an empty one), read backwards in blocks.
 */
export async function tailOffset(fh: FileHandle, lines: number): Promise<number> {
  const size = (await fh.stat()).size;
  if (lines === 0) return size;
  const block = Buffer.allocUnsafe(64 * 1024);
  let need = lines;
  let end = size;
  while (end > 0) {
    const start = Math.max(0, end - block.length);
    const { bytesRead } = await fh.read(block, 0, end - start, start);
    for (let i = bytesRead - 1; i >= 0; i--) {
      if (block[i] !== 0x0a || start + i === size - 1) continue;
      if (--need === 0) return start + i + 1;
    }
    end = start;
  }
  return 0;
}
