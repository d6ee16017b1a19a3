import { sql, type RawBuilder } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, DATABASE_KINDS, TestDatabase } from './testing';

// What `stream()` gives the repositories (JobsRepository.eachPending reads the queue with it).
describe.each(DATABASE_KINDS)('streamed statements on %s', (_kind, open) => {
  let tdb: TestDatabase;
  beforeAll(async () => {
    tdb = await open();
  });
  afterAll(async () => tdb?.drop());

  const stream = (q: RawBuilder<unknown>, chunk: number) => tdb.handle.db.getExecutor().stream(q.compile(tdb.handle.db), chunk);
  /** The pool still answers, on every connection it has (5), after what a test did to one. */
  const stillAnswers = async () => {
    const r = await Promise.all(Array.from({ length: 8 }, (_, i) => sql<{ n: number }>`select ${i}::int as n`.execute(tdb.handle.db)));
    expect(r.map((x) => x.rows[0]!.n)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  };

  it('hands on every row once, in order, in chunks of at most the size asked', async () => {
    const chunks: number[][] = [];
    for await (const c of stream(sql`select g::int as n, repeat('x', 40) as pad from generate_series(1, 20000) g`, 1000)) chunks.push((c.rows as { n: number }[]).map((r) => r.n));
    expect(chunks.flat()).toEqual(Array.from({ length: 20000 }, (_, i) => i + 1));
    expect(Math.max(...chunks.map((c) => c.length))).toBeLessThanOrEqual(1000);
    expect(chunks.length).toBeGreaterThanOrEqual(20);
    await stillAnswers();
  });

  it('reads each row as a whole read does: every type, nulls, repeated and odd names', async () => {
    const q = sql`
      select g as n, g::int8 * 1000000007 as big, g % 2 = 0 as even, case when g % 3 = 0 then null else 'x' || g end as maybe,
             timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second' as at, array[g, g + 1] as pair, jsonb_build_object('g', g) as doc,
             g as "odd name""with quote", 1.5::numeric * g as num, null::text as "nothing"
      from generate_series(1, 3000) g`;
    const whole = (await q.execute(tdb.handle.db)).rows;
    const streamed: unknown[] = [];
    for await (const c of stream(q, 700)) streamed.push(...c.rows);
    expect(streamed).toEqual(whole);
    expect(streamed[2]).toMatchObject({ n: 3, big: 3000000021, even: false, maybe: null, pair: [3, 4], doc: { g: 3 }, 'odd name"with quote': 3, nothing: null });
  });

  it('fails with the server error when the statement fails part-way, and the connection is usable after', async () => {
    let seen = 0;
    const read = (async () => {
      for await (const c of stream(sql`select 1 / (5000 - g) as x from generate_series(1, 10000) g`, 100)) seen += c.rows.length;
    })();
    await expect(read).rejects.toThrow(/division by zero/);
    expect(seen).toBeLessThan(5000);
    await stillAnswers();
  });

  it('leaves the connection clean when the reader stops after the first chunk', async () => {
    for (let i = 0; i < 3; i++) {
      let chunks = 0;
      for await (const c of stream(sql`select g, repeat('y', 100) as pad from generate_series(1, 50000) g`, 100)) {
        expect(c.rows.length).toBeGreaterThan(0);
        chunks++;
        break;
      }
      expect(chunks).toBe(1);
    }
    await stillAnswers();
  });
});

describe('streamed statements on real PostgreSQL', () => {
  it('hand on the first rows while the server is still producing the rest', async () => {
    const tdb = await createTestDatabase();
    try {
      const q = sql`select g, case when g = 5000 then pg_sleep(1) end from generate_series(1, 10000) g`.compile(tdb.handle.db);
      const t0 = Date.now();
      let first = NaN;
      let n = 0;
      for await (const c of tdb.handle.db.getExecutor().stream(q, 500)) {
        if (Number.isNaN(first)) first = Date.now() - t0;
        n += c.rows.length;
      }
      const all = Date.now() - t0;
      expect(n).toBe(10000);
      // Read whole first, the first chunk would come after the server's one-second sleep.
      expect(all - first).toBeGreaterThanOrEqual(800);
    } finally {
      await tdb.drop();
    }
  });
});
