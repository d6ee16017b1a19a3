import { Query, types } from 'pg';

/** A column as the server describes it (pg's RowDescription field). */
interface Column {
  name: string;
  dataTypeID: number;
}

/** The hooks pg calls on the query it runs (its Submittable protocol), which its types leave out. */
interface QueryHooks {
  handleRowDescription(msg: { fields: Column[] }): void;
  handleDataRow(msg: { fields: (string | null)[] }): void;
}
const pgQuery = Query.prototype as unknown as QueryHooks;

/**
 * A function making a row object from a DataRow's text values, its keys fixed: pg sets each
 * column by name on a copy of a template (a keyed store per value, its cache gone
 * megamorphic with sixteen names), about a third of the client's time reading 145,000 jobs.
 * Names go in as JSON strings, so no name is ever code. Null when a name would not make a plain
 * key (pg's own parsing is used then).
 */
function rowMaker(columns: readonly Column[]): ((values: readonly (string | null)[]) => unknown) | null {
  if (columns.some((c) => c.name === '__proto__')) return null;
  const parsers = columns.map((c) => types.getTypeParser(c.dataTypeID, 'text'));
  const fields = columns.map((c, i) => `${JSON.stringify(c.name)}: v[${i}] === null ? null : p[${i}](v[${i}])`);
  return new Function('p', `return (v) => ({ ${fields.join(', ')} });`)(parsers) as (values: readonly (string | null)[]) => unknown;
}

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
  private make: ((values: readonly (string | null)[]) => unknown) | null = null;

  constructor(text: string, values: unknown[]) {
    super(text, values);
    // A row listener also keeps pg from accumulating the rows (it does so only without one).
    // (pg's own parsing, when `rowMaker` declines, hands rows on by this event.)
    this.on('row', (row: R) => this.take(row));
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

  handleRowDescription(msg: { fields: Column[] }): void {
    pgQuery.handleRowDescription.call(this, msg);
    this.make = rowMaker(msg.fields);
  }

  handleDataRow(msg: { fields: (string | null)[] }): void {
    if (!this.make) return pgQuery.handleDataRow.call(this, msg);
    if (this.closed || this.failure) return;
    try {
      this.take(this.make(msg.fields) as R);
    } catch (e) {
      // Reported once the statement is over (the connection must read the rest first).
      this.failure = e as Error;
    }
  }

  private take(row: R): void {
    if (this.closed) return;
    this.buffered.push(row);
    this.notify();
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
