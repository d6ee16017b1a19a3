import { describe, expect, it } from 'vitest';
import { openDatabase } from './database';
import { migrateToLatest } from './migrate';
import { NodesRepository } from './repositories/nodes.repository';
import type { NodeIsolationJson } from './schema';
import { createTestDatabase } from './testing';

const iso: NodeIsolationJson = { cgroup: 'v1', pids: true, memory: false, devices: true, uids: 'range', detail: 'cgroup v1 (freezer, pids, memory, devices)' };

/** What a node's agent reported about job isolation is stored and listed, on both dialects. */
describe('node isolation', () => {
  for (const dialect of ['PostgreSQL', 'PGlite'] as const) {
    it(`is null until reported, then what the agent said (${dialect})`, async () => {
      const scratch = dialect === 'PostgreSQL' ? await createTestDatabase() : undefined;
      const handle = scratch?.handle ?? (await openDatabase({}));
      if (!scratch) await migrateToLatest(handle.db);
      try {
        const nodes = new NodesRepository(handle.db);
        const id = await nodes.create({ name: 'n1', gpuType: 'h100', gpus: 8, rack: 'r1', leafSwitch: 'l1', tokenHash: 'x' });
        expect((await nodes.list())[0]!.isolation).toBeNull();
        await nodes.setIsolation(id, iso);
        expect((await nodes.list())[0]!.isolation).toEqual(iso);
        await nodes.setIsolation(id, null);
        expect((await nodes.list())[0]!.isolation).toBeNull();
      } finally {
        if (scratch) await scratch.drop();
        else await handle.close();
      }
    });
  }
});
