import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, TestDatabase } from '../testing';
import { IdentityRepository } from './identity.repository';
import { compareNodeNames, JobsRepository, lowestFreePort } from './jobs.repository';
import { NodesRepository } from './nodes.repository';
import { TenantsRepository } from './tenants.repository';

const t0 = new Date('2026-01-01T00:00:00Z');
// A small range, so that starts also meet a node whose ports are all taken.
const PORTS = { first: 40000, last: 40002 };
const NODE_NAMES = ['gpu-b', 'gpu-a', 'gpu-c'];

describe('MASTER_PORT chosen at commit', () => {
  let tdb: TestDatabase;
  let jobs: JobsRepository;
  let nodeIds: string[];
  let newJob: (gpus: number) => Promise<string>;

  beforeAll(async () => {
    tdb = await createTestDatabase();
    const db = tdb.handle.db;
    const tenantId = await new TenantsRepository(db).create({ name: 'naver', displayName: 'Naver', weight: 1, quotas: [{ gpuType: 'h100', guaranteed: 24, limit: 24 }] });
    const userId = await new IdentityRepository(db).createUser({ name: 'alice', tenantId, role: 'researcher' });
    const nodes = new NodesRepository(db);
    nodeIds = [];
    for (const name of NODE_NAMES) {
      const id = await nodes.create({ name, gpuType: 'h100', gpus: 8, rack: 'r1', leafSwitch: 'l1', tokenHash: 'x' });
      await nodes.setState(id, 'up', 'test');
      nodeIds.push(id);
    }
    jobs = new JobsRepository(db);
    let n = 0;
    newJob = (gpus) =>
      jobs.insert({ tenant_id: tenantId, user_id: userId, name: `j${n++}`, gpus, gpu_type: 'h100', priority: 'normal', time_limit_seconds: 60, command: ['true'], env: {}, working_dir: null, requeue: false, submitted_at: t0 });
  });
  afterAll(async () => tdb?.drop());

  /** Running jobs with their port and rank 0 node (the first of their nodes by name). */
  const runningPorts = async () => {
    const ports = new Map((await tdb.handle.db.selectFrom('jobs').select(['id', 'master_port']).where('state', '=', 'running').execute()).map((r) => [r.id, r.master_port]));
    return (await jobs.running()).map((j) => ({ id: j.id, rank0: j.placement.map((p) => p.nodeName).sort(compareNodeNames)[0]!, port: ports.get(j.id)! }));
  };

  it('picks the lowest free port of the range', () => {
    expect(lowestFreePort(PORTS, new Set())).toBe(40000);
    expect(lowestFreePort(PORTS, new Set([40000, 40002]))).toBe(40001);
    expect(lowestFreePort(PORTS, new Set([40000, 40001, 40002]))).toBeUndefined();
  });

  it('never gives two running jobs with rank 0 on one node the same port, single- or multi-node, within a commit or across', async () => {
    // A step starts a batch of jobs in one commit (each on 1 or 2 nodes, 1 GPU on each) or ends some running ones.
    const start = fc.record({ kind: fc.constant('start' as const), jobs: fc.array(fc.uniqueArray(fc.integer({ min: 0, max: 2 }), { minLength: 1, maxLength: 2 }), { minLength: 1, maxLength: 4 }) });
    const end = fc.record({ kind: fc.constant('end' as const), picks: fc.array(fc.nat(), { minLength: 1, maxLength: 3 }) });
    await fc.assert(
      fc.asyncProperty(fc.array(fc.oneof(start, end), { minLength: 1, maxLength: 12 }), async (steps) => {
        const used = new Map<string, Set<number>>(nodeIds.map((id) => [id, new Set()]));
        const held = new Map<string, { nodeId: string; gpu: number }[]>();
        for (const step of steps) {
          if (step.kind === 'end') {
            const ids = [...held.keys()];
            for (const p of step.picks) {
              const id = ids[p % Math.max(1, ids.length)]!;
              if (!id || !held.has(id)) continue;
              expect(await jobs.transition(id, ['running'], 'completed', 'test', t0)).toBe(true);
              for (const g of held.get(id)!) used.get(g.nodeId)!.delete(g.gpu);
              held.delete(id);
            }
          } else {
            const batch = [];
            for (const nodes of step.jobs) {
              const placement = nodes.map((n) => {
                const free = [...Array(8).keys()].find((g) => !used.get(nodeIds[n]!)!.has(g));
                return { nodeId: nodeIds[n]!, gpuIndices: free === undefined ? [] : [free] };
              });
              if (placement.some((p) => !p.gpuIndices.length)) continue;
              for (const p of placement) used.get(p.nodeId)!.add(p.gpuIndices[0]!);
              batch.push({ jobId: await newJob(placement.length), gpuModel: 'h100' as const, placement, held: placement.map((p) => ({ nodeId: p.nodeId, gpu: p.gpuIndices[0]! })) });
            }
            const before = await runningPorts();
            const r = await jobs.commitStarts(batch, t0, undefined, PORTS);
            for (const b of batch) {
              if (r.started.includes(b.jobId)) held.set(b.jobId, b.held);
              else for (const g of b.held) used.get(g.nodeId)!.delete(g.gpu);
            }
            // A start is refused only when its rank 0 node has every port of the range in use.
            for (const s of r.skipped) {
              expect(s.why).toMatch(/^no free MASTER_PORT in 40000-40002 on gpu-/);
              const rank0 = s.why.split(' on ')[1]!;
              const inUse = new Set((await runningPorts()).filter((j) => j.rank0 === rank0).map((j) => j.port));
              expect(inUse.size).toBe(3);
            }
            // Jobs already running keep their port.
            const after = new Map((await runningPorts()).map((j) => [j.id, j.port]));
            for (const j of before) expect(after.get(j.id)).toBe(j.port);
          }
          const running = await runningPorts();
          const seen = new Set<string>();
          for (const j of running) {
            expect(j.port).toBeGreaterThanOrEqual(PORTS.first);
            expect(j.port).toBeLessThanOrEqual(PORTS.last);
            const key = `${j.rank0}:${j.port}`;
            expect(seen.has(key), `two running jobs with rank 0 on ${j.rank0} share port ${j.port}`).toBe(false);
            seen.add(key);
          }
        }
        for (const id of held.keys()) await jobs.transition(id, ['running'], 'completed', 'test', t0);
      }),
      { numRuns: 25 },
    );
  });
});
