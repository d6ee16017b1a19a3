import { NodesRepository } from '@nuri/db';
import { createTestDatabase, type TestDatabase } from '../../../../libs/db/src/testing';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LiveNodes } from './live-nodes';

const t0 = new Date('2026-01-01T00:00:00Z');

/**
 * The leader's nodes in memory against a real PostgreSQL: after any sequence of writes through
 * the repository (registrations, heartbeats, hellos, state changes, GPU health), a refresh that
 * reads only the changed nodes must give exactly what a full read gives.
 */
describe('LiveNodes: the incremental fleet equals a full read', () => {
  let tdb: TestDatabase;
  let nodes: NodesRepository;
  let registered = 0;
  const register = () => nodes.create({ name: `g${String(++registered).padStart(3, '0')}`, gpuType: registered % 2 ? 'h100' : 'h800', gpus: 8, rack: 'r1', leafSwitch: 'l1', tokenHash: 'x' });

  beforeAll(async () => {
    tdb = await createTestDatabase();
    nodes = new NodesRepository(tdb.handle.db);
    for (let i = 0; i < 4; i++) await register();
  });
  afterAll(async () => tdb?.drop());

  const full = async () => new LiveNodes(nodes).refresh();

  type Op =
    | { op: 'register' }
    | { op: 'refresh' }
    | { op: 'beat' | 'connect' | 'disconnect' | 'drain' | 'down' | 'up' | 'isolation'; pick: number; at: number }
    | { op: 'health'; pick: number; gpu: number; healthy: boolean; at: number };
  const opArb: fc.Arbitrary<Op> = fc.oneof(
    fc.constant({ op: 'register' as const }),
    fc.constant({ op: 'refresh' as const }),
    fc.record({ op: fc.constantFrom('beat' as const, 'connect' as const, 'disconnect' as const, 'drain' as const, 'down' as const, 'up' as const, 'isolation' as const), pick: fc.nat(20), at: fc.nat(100_000) }),
    fc.record({ op: fc.constant('health' as const), pick: fc.nat(20), gpu: fc.nat(7), healthy: fc.boolean(), at: fc.nat(100_000) }),
  );

  it('after random writes and refreshes (property, real PostgreSQL)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 3, maxLength: 25 }), async (ops) => {
        const live = new LiveNodes(nodes);
        await live.refresh();
        for (const o of ops) {
          if (o.op === 'refresh') {
            await live.refresh();
            continue;
          }
          if (o.op === 'register') {
            await register();
            continue;
          }
          const all = (await nodes.list()).map((n) => n.id).sort();
          const id = all[o.pick % all.length]!;
          const at = new Date(t0.getTime() + o.at);
          if (o.op === 'beat') await nodes.heartbeatMany([id], at);
          else if (o.op === 'connect' || o.op === 'disconnect') await nodes.markConnected(id, o.op === 'connect', at, 'gw-1');
          else if (o.op === 'drain') await nodes.setState(id, 'draining', 'drained by test');
          else if (o.op === 'down') await nodes.setState(id, 'down', 'agent silent');
          else if (o.op === 'up') await nodes.markUpMany([id], 'agent heard again');
          else if (o.op === 'isolation') await nodes.helloMany([{ id, isolation: { cgroup: o.at % 2 ? 'v2' : 'none', pids: true, memory: false, devices: false, uids: 'none', detail: `d${o.at}` }, outputDir: null, stream: 's' }], at, 'gw-2', t0);
          else if (o.op === 'health') await nodes.setGpuHealth(id, o.gpu, o.healthy, 'test', at);
        }
        expect(await live.refresh()).toEqual(await full());
      }),
      { numRuns: 25 },
    );
  });

  it('sees a change whose transaction began before a refresh and committed after it', async () => {
    const live = new LiveNodes(nodes);
    const before = await live.refresh();
    const id = before[0]!.id;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let opened!: () => void;
    const isOpen = new Promise<void>((r) => (opened = r));
    const slow = tdb.handle.db.transaction().execute(async (tx) => {
      await new NodesRepository(tx).setState(id, 'drained', 'slow drain');
      opened();
      await gate;
    });
    await Promise.race([isOpen, slow]);
    // Another node changes and commits meanwhile: read at once, the open one not yet.
    const other = before[1]!.id;
    await nodes.setState(other, 'draining', 'quick drain');
    const mid = await live.refresh();
    expect(mid.find((n) => n.id === other)!.state).toBe('draining');
    expect(mid.find((n) => n.id === id)!.state).toBe(before[0]!.state);
    release();
    await slow;
    const after = await live.refresh();
    expect(after.find((n) => n.id === id)!.state).toBe('drained');
    expect(after).toEqual(await full());
  });
});
