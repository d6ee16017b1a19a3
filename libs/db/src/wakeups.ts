import { EventEmitter } from 'node:events';
import { Client, Pool, type PoolClient } from 'pg';

export type WakeReason = 'submit' | 'job_end' | 'node_change' | 'cancel' | 'dispatch';

/** Where wake-up connection problems are told (the server passes its logger). */
export interface WakeupsLog {
  log(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

const CONSOLE_LOG: WakeupsLog = {
  log: (m) => console.log(m),
  warn: (m) => console.warn(m),
  error: (m) => console.error(m),
};

/** The server process id of a connected client (pg sets it from the backend's key data). */
const backendPid = (c: Client | PoolClient): number => (c as unknown as { processID: number }).processID;

const messageOf = (e: unknown) => (e instanceof Error ? e.message : String(e));

/**
 * NOTIFY rounds start at least this far apart. Each wakes every listening process (the leader,
 * its standbys, the gateways) and is a commit: sent again as soon as the last came back, 1,400
 * submissions a second were about 1,000 NOTIFYs, the most costly of the api's writes to the
 * database. A wake after a quiet spell still goes at once.
 */
const NOTIFY_GAP_MS = 10;

/**
 * Tells the scheduler there is something to do (a submit, a job end, a node change).
 * In one process it is an event; across processes on a real PostgreSQL it also travels
 * as NOTIFY on channel `nuri_wake`, so an api replica wakes the leader scheduler.
 * Connection problems are logged: a silent loss only shows as starts waiting for the tick.
 */
export class Wakeups {
  private readonly events = new EventEmitter();
  private notifier?: Pool;
  private listener?: Client;
  private databaseUrl?: string;
  private closing = false;
  private retry?: NodeJS.Timeout;
  private failures = 0;
  /** A NOTIFY failed and none has succeeded since: the next failures are not logged again. */
  private notifyFailing = false;

  constructor(private readonly log: WakeupsLog = CONSOLE_LOG) {}

  async connect(databaseUrl: string, listen: boolean): Promise<void> {
    this.databaseUrl = databaseUrl;
    // A one-connection pool queues notifications instead of overlapping them on a client.
    this.notifier = new Pool({ connectionString: databaseUrl, max: 1 });
    // An idle connection that dies is replaced on the next NOTIFY; say so, do not crash.
    this.notifier.on('error', (e) => this.log.warn(`wake-up notifier connection lost: ${e.message}`));
    this.notifier.on('connect', (c) => this.ownSenders.add(backendPid(c)));
    this.notifier.on('remove', (c) => this.ownSenders.delete(backendPid(c)));
    if (listen) await this.listen();
  }

  /**
   * LISTENs on its own connection. When that connection dies (a database restart, a
   * terminated backend) it is opened again with backoff, and everyone is woken once for
   * what may have been missed meanwhile: without it, wake-ups from other processes would
   * stop for good and every start would wait for the periodic tick.
   */
  private async listen(): Promise<void> {
    const client = new Client({ connectionString: this.databaseUrl });
    let lost = false;
    const onLost = (e?: Error) => {
      if (lost) return;
      lost = true;
      if (this.listener === client) this.listener = undefined;
      if (!this.closing) this.log.warn(`wake-up listener lost (${e ? e.message : 'connection ended'}); reconnecting`);
      client.end().catch(() => undefined); // already broken: ending it can only fail the same way
      this.reconnectLater();
    };
    client.on('error', onLost);
    client.on('end', () => onLost());
    client.on('notification', (n) => {
      // Ours, come back: this process's listeners had it when it was asked.
      if (!this.ownSenders.has(n.processId)) this.events.emit('wake', (n.payload ?? 'submit') as WakeReason);
    });
    this.listener = client;
    await client.connect();
    await client.query('listen nuri_wake');
    this.failures = 0;
  }

  private reconnectLater(): void {
    if (this.closing || this.retry) return;
    const delay = Math.min(10_000, 250 * 2 ** this.failures++);
    this.retry = setTimeout(() => {
      this.retry = undefined;
      if (this.closing) return;
      this.listen().then(
        () => {
          this.log.log('wake-up listener reconnected');
          for (const reason of ['submit', 'dispatch'] as const) this.events.emit('wake', reason);
        },
        (e: unknown) => {
          this.log.error(`wake-up listener reconnect failed (attempt ${this.failures}): ${messageOf(e)}`);
          this.reconnectLater();
        },
      );
    }, delay);
    this.retry.unref?.();
  }

  /**
   * Fire and forget: a lost wake-up only delays work until the periodic tick. Over PostgreSQL,
   * wakes asked while a NOTIFY is in flight, or within NOTIFY_GAP_MS of the last one, are
   * coalesced into one per reason sent after it (so still after every commit that asked): 2,000
   * submits a second are at most 100 NOTIFYs a reason.
   */
  wake(reason: WakeReason): void {
    // This process's listeners at once, not after a round trip through the database (one
    // process with every role: a submission's express start waited for its own NOTIFY).
    this.events.emit('wake', reason);
    if (!this.notifier) return;
    this.unsent.add(reason);
    if (!this.notifying) this.notifyUnsent();
  }

  private readonly unsent = new Set<WakeReason>();
  /** Backend pids of this instance's NOTIFY connections, whose notifications its listeners already had. */
  private readonly ownSenders = new Set<number>();
  private notifying = false;
  private gap?: NodeJS.Timeout;

  private notifyUnsent(): void {
    const reasons = [...this.unsent];
    this.unsent.clear();
    this.notifying = reasons.length > 0 && !!this.notifier;
    if (!this.notifying) return;
    const began = performance.now();
    const sent = reasons.map((r) => this.notifier!.query('select pg_notify($1, $2)', ['nuri_wake', r]).then(() => this.notified(), (e: unknown) => this.notifyFailed(e)));
    void Promise.all(sent).then(() => {
      const wait = NOTIFY_GAP_MS - (performance.now() - began);
      if (wait <= 0 || this.closing) return this.notifyUnsent();
      // Still `notifying`: wakes meanwhile wait for this round.
      this.gap = setTimeout(() => this.notifyUnsent(), wait);
      this.gap.unref?.();
    });
  }

  private notified(): void {
    if (!this.notifyFailing) return;
    this.notifyFailing = false;
    this.log.log('wake-up NOTIFY works again');
  }

  /** Logged once until a NOTIFY succeeds again: during an outage every wake fails the same way. */
  private notifyFailed(e: unknown): void {
    if (this.closing || this.notifyFailing) return;
    this.notifyFailing = true;
    this.log.error(`wake-up NOTIFY failed (other processes wake on their periodic tick until it works): ${messageOf(e)}`);
  }

  onWake(fn: (reason: WakeReason) => void): () => void {
    this.events.on('wake', fn);
    return () => this.events.off('wake', fn);
  }

  async close(): Promise<void> {
    this.closing = true;
    clearTimeout(this.retry);
    clearTimeout(this.gap);
    await Promise.allSettled([this.notifier?.end(), this.listener?.end()]);
  }
}
