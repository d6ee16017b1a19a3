import { Query } from 'pg';

/**
 * What Kysely's `stream()` asks of the driver (its PostgresDialect `cursor` option), without
 * a server-side cursor: one plain statement whose rows are handed on as they arrive, in the
 * chunks the socket delivers them in. A cursor (pg-cursor) fetches each chunk with a round trip
 * of its own, during which the server waits; here it keeps sending while the client parses.
 *
 * Why stream at all: a leader reloading 100,000 pending jobs held every row the driver had
 * parsed until the last arrived, so each survived the young generation's collections twice
 * (copied, then promoted) only to be dropped once turned into the leader's own form. Handed on
 * as they come, they die young.
 */
export class RowStream<R> extends Query {
  private buffered: R[] = [];
  private ended = false;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;
  private closed = false;

  constructor(text: string, values: unknown[]) {
    super(text, values);
    // A row listener also keeps pg from accumulating the rows (it does so only without one).
    this.on('row', (row: R) => {
      if (this.closed) return;
      this.buffered.push(row);
      this.notify();
    });
    this.on('end', () => {
      this.ended = true;
      this.notify();
    });
    this.on('error', (e: Error) => {
      this.failure = e;
      this.ended = true;
      this.notify();
    });
  }

  /** Up to `max` rows received so far, waiting for some when none are; [] once all are read. */
  async read(max: number): Promise<R[]> {
    while (!this.buffered.length && !this.ended) await new Promise<void>((r) => (this.wake = r));
    if (this.failure) throw this.failure;
    return this.buffered.length <= max ? this.buffered.splice(0) : this.buffered.splice(0, max);
  }

  /** Drops what was not read and waits for the statement to end (the connection is then free again). */
  async close(): Promise<void> {
    this.closed = true;
    this.buffered = [];
    while (!this.ended) await new Promise<void>((r) => (this.wake = r));
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }
}
