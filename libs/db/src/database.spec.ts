import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { openDatabase } from './database';
import { migrateToLatest } from './migrate';

describe('embedded database', () => {
  it('migrates, and migrating twice is a no-op', async () => {
    const h = await openDatabase({});
    expect(await migrateToLatest(h.db)).toEqual(['0001_init']);
    expect(await migrateToLatest(h.db)).toEqual([]);
    const r = await sql<{ n: number }>`select count(*)::int as n from tenants`.execute(h.db);
    expect(r.rows[0]!.n).toBe(0);
    await h.close();
  });
});

describe('real PostgreSQL', () => {
  it('runs migrations once when two processes start at the same time', async () => {
    const { createTestDatabase } = await import('./testing');
    const { migrateDown } = await import('./migrate');
    const t = await createTestDatabase();
    try {
      await migrateDown(t.handle.db);
      const other = await openDatabase({ url: t.url });
      const [a, b] = await Promise.all([migrateToLatest(t.handle.db), migrateToLatest(other.db)]);
      expect([...a, ...b]).toEqual(['0001_init']);
      await other.close();
    } finally {
      await t.drop();
    }
  });
});
