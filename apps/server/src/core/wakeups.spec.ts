import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, TestDatabase } from '../../../../libs/db/src/testing';
import { Wakeups, type WakeReason } from './wakeups';

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
    const listener = new Wakeups();
    const sender = new Wakeups();
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
  });
});
