import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, TestDatabase } from './testing';
import { Wakeups, type WakeReason, type WakeupsLog } from './wakeups';

/** A logger that keeps what it was told, by level. */
function recorder(): WakeupsLog & { lines: string[] } {
  const lines: string[] = [];
  return { lines, log: (m) => lines.push(`log ${m}`), warn: (m) => lines.push(`warn ${m}`), error: (m) => lines.push(`error ${m}`) };
}

describe('wake-ups across processes (real PostgreSQL)', () => {
  let db: TestDatabase;
  const open: Wakeups[] = [];
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    for (const w of open) await w.close();
    await db?.drop();
  });

  it('keeps arriving after the listening connection is killed: it reconnects and wakes everyone once for what it missed', async () => {
    const said = recorder();
    const listener = new Wakeups(said);
    const sender = new Wakeups(recorder());
    open.push(listener, sender);
    await listener.connect(db.url, true);
    await sender.connect(db.url, false);
    const got: WakeReason[] = [];
    listener.onWake((r) => got.push(r));
    const arrives = async (reason: WakeReason) => {
      for (let i = 0; i < 100; i++) {
        if (got.includes(reason)) return true;
        await new Promise((r) => setTimeout(r, 50));
      }
      return false;
    };
    sender.wake('job_end');
    expect(await arrives('job_end')).toBe(true);

    const admin = new Client({ connectionString: db.url });
    await admin.connect();
    const killed = await admin.query(`select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and query ilike 'listen%'`);
    await admin.end();
    expect(killed.rowCount).toBe(1);
    got.length = 0;
    expect(await arrives('dispatch')).toBe(true); // the catch-up wake after reconnecting
    sender.wake('node_change');
    expect(await arrives('node_change')).toBe(true);
    // The operator can see it happened: the loss with its cause, then the reconnect.
    expect(said.lines[0]).toMatch(/^warn wake-up listener lost \(.*terminat.*\); reconnecting$/);
    expect(said.lines).toContain('log wake-up listener reconnected');
  });

  it("wakes this process's listeners at once and once, and other processes through the database", async () => {
    const here = new Wakeups(recorder());
    const there = new Wakeups(recorder());
    open.push(here, there);
    await here.connect(db.url, true);
    await there.connect(db.url, true);
    const gotHere: WakeReason[] = [];
    const gotThere: WakeReason[] = [];
    here.onWake((r) => gotHere.push(r));
    there.onWake((r) => gotThere.push(r));
    here.wake('submit');
    // Before any round trip to the database.
    expect(gotHere).toEqual(['submit']);
    for (let i = 0; i < 100 && gotThere.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(gotThere).toEqual(['submit']);
    there.wake('job_end');
    for (let i = 0; i < 100 && !gotHere.includes('job_end'); i++) await new Promise((r) => setTimeout(r, 20));
    // Its own NOTIFY came back to this process's listener meanwhile, and was not told twice.
    await new Promise((r) => setTimeout(r, 300));
    expect(gotHere).toEqual(['submit', 'job_end']);
    expect(gotThere).toEqual(['submit', 'job_end']);
  });

  it('sends a stream of wakes as a few NOTIFYs, the last after the last wake', async () => {
    const sender = new Wakeups(recorder());
    const listener = new Wakeups(recorder());
    open.push(sender, listener);
    await sender.connect(db.url, false);
    await listener.connect(db.url, true);
    const got: { reason: WakeReason; at: number }[] = [];
    listener.onWake((reason) => got.push({ reason, at: performance.now() }));
    // 200 submissions over about 200 ms, a NOTIFY round trip on loopback being well under 1 ms.
    let lastWake = 0;
    const firstWake = performance.now();
    for (let i = 0; i < 200; i++) {
      sender.wake('submit');
      lastWake = performance.now();
      await new Promise((r) => setTimeout(r, 1));
    }
    for (let i = 0; i < 100 && !got.some((g) => g.at > lastWake); i++) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 100));
    const stream = got.length;
    // Rounds start at least NOTIFY_GAP_MS (10 ms) apart (a timer may fire up to 1 ms early), and
    // one more goes after the last wake; one per wake without the gap (198 of 200 when tried).
    expect(stream).toBeGreaterThan(1);
    expect(stream).toBeLessThanOrEqual(Math.ceil((lastWake - firstWake) / 9) + 2);
    expect(got.every((g) => g.reason === 'submit')).toBe(true);
    expect(got.at(-1)!.at).toBeGreaterThan(lastWake);
    // Another reason after the stream still arrives.
    sender.wake('job_end');
    for (let i = 0; i < 100 && !got.some((g) => g.reason === 'job_end'); i++) await new Promise((r) => setTimeout(r, 10));
    expect(got.some((g) => g.reason === 'job_end')).toBe(true);
  });

  it('logs a failing NOTIFY once, not once per wake, with the reason the database gave', async () => {
    const said = recorder();
    const sender = new Wakeups(said);
    open.push(sender);
    await sender.connect(db.url.replace(/\/[^/?]+(\?|$)/, '/nuri_no_such_database$1'), false);
    for (const r of ['submit', 'job_end', 'cancel'] as const) sender.wake(r);
    for (let i = 0; i < 100 && said.lines.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 300));
    sender.wake('submit');
    await new Promise((r) => setTimeout(r, 300));
    expect(said.lines).toHaveLength(1);
    expect(said.lines[0]).toMatch(/^error wake-up NOTIFY failed .*nuri_no_such_database/);
  });
});
