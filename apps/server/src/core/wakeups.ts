import { EventEmitter } from 'node:events';
import { Client, Pool } from 'pg';

export type WakeReason = 'submit' | 'job_end' | 'node_change' | 'cancel' | 'dispatch';

/**
 * Tells the scheduler there is something to do (a submit, a job end, a node change).
 * In one process it is an event; across processes on a real PostgreSQL it also travels
 * as NOTIFY on channel `nuri_wake`, so an api replica wakes the leader scheduler.
 */
export class Wakeups {
  private readonly events = new EventEmitter();
  private notifier?: Pool;
  private listener?: Client;

  async connect(databaseUrl: string, listen: boolean): Promise<void> {
    // A one-connection pool queues notifications instead of overlapping them on a client.
    this.notifier = new Pool({ connectionString: databaseUrl, max: 1 });
    this.notifier.on('error', () => undefined);
    if (listen) {
      this.listener = new Client({ connectionString: databaseUrl });
      this.listener.on('error', () => undefined);
      await this.listener.connect();
      this.listener.on('notification', (n) => this.events.emit('wake', (n.payload ?? 'submit') as WakeReason));
      await this.listener.query('listen nuri_wake');
    }
  }

  /** Fire and forget: a lost wake-up only delays work until the periodic tick. */
  wake(reason: WakeReason): void {
    if (this.notifier) this.notifier.query('select pg_notify($1, $2)', ['nuri_wake', reason]).catch(() => undefined);
    else this.events.emit('wake', reason);
  }

  onWake(fn: (reason: WakeReason) => void): () => void {
    this.events.on('wake', fn);
    return () => this.events.off('wake', fn);
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.notifier?.end(), this.listener?.end()]);
  }
}
