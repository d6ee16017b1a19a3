import { WIRE_VERSION, type ServerMessage } from '@nuri/contracts';
import type { ServerConfig } from '@nuri/config';
import type { DatabaseHandle, JobPlacement, JobsRepository, LiveJob, NodesRepository, Wakeups } from '@nuri/db';
import { NuriMetrics } from '@nuri/metrics';
import { afterEach, describe, expect, it } from 'vitest';
import type { Clock } from '../core/clock';
import type { JobLifecycle } from '../lifecycle/job-lifecycle';
import { FleetService } from './fleet.service';

/** A fake that throws on any member the test did not give it: the service uses nothing unseen. */
function strict<T extends object>(name: string, members: Partial<Record<keyof T, unknown>>): T {
  return new Proxy(members, {
    get(target, key) {
      if (key in target) return (target as Record<PropertyKey, unknown>)[key];
      if (key === 'then') return undefined;
      throw new Error(`${name}.${String(key)} was not expected`);
    },
  }) as T;
}

/** A promise resolved by the test, to put a read's answer after something else. */
function later<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

const NODE = 'h100-1';
const NODE_ID = 'node-1';
const NODE2 = 'h100-2';
const NODE2_ID = 'node-2';
const ids: Record<string, string> = { [NODE]: NODE_ID, [NODE2]: NODE2_ID };
const JOB = 'job-30';

const placed = (attempts: number, nodeId = NODE_ID): JobPlacement => ({ id: JOB, attempts, stopRequested: null, placement: [{ nodeId, gpuIndices: [0, 1, 2, 3] }] });
const running = (attempts: number, node = NODE): LiveJob =>
  ({
    id: JOB,
    state: 'running',
    attempts,
    onNode: true,
    rankExited: false,
    stop_requested: null,
    rankNodes: [{ name: node, address: null }],
    tenantName: 'naver',
    command: ['sleep', '60'],
    env: {},
    working_dir: '/tmp',
    time_limit_seconds: 600,
    master_port: 29500,
    script: null,
    array_id: null,
    array_task_id: null,
  }) as unknown as LiveJob;

/**
 * The gateway side against strict fakes of the database, so that the order of a reconcile's
 * fresh read and an exit applied on the same connection is the test's to choose.
 */
describe('fleet: a reconcile racing an exit on the same connection', () => {
  let fleet: FleetService | undefined;
  afterEach(async () => {
    await fleet?.settled();
    fleet = undefined;
  });

  function setup() {
    const sent: ServerMessage[] = [];
    const state = {
      placements: [] as JobPlacement[],
      fresh: [] as (() => Promise<Map<string, LiveJob>>)[],
      exits: [] as { jobId: string; attempt?: number }[],
      /** What each read of running jobs asked for: 'all', or the nodes. */
      reads: [] as ('all' | string[])[],
      /** The jobs written since the last look, for `changedPlacementsSince` (then emptied). */
      changed: [] as { id: string; nodeIds: string[] }[],
      xid: 100,
    };
    const config = { schedulerTickMs: 1000, timeoutGraceSeconds: 5, preemptGraceSeconds: 30, nodeDownAfterSeconds: 30, masterPorts: { first: 29500 }, idle: { thresholdRatio: 0.05 } } as unknown as ServerConfig;
    const time = { ms: Date.parse('2026-12-05T09:00:00Z') };
    const clock = strict<Clock>('clock', { now: () => new Date(time.ms) });
    const wakeups = strict<Wakeups>('wakeups', { wake: () => undefined });
    const nodeRepo = strict<NodesRepository>('nodes', {
      idByName: async (name: string) => ids[name],
      helloMany: async (items: { id: string }[]) => ({
        came: new Set<string>(),
        gpus: new Map(items.map((i) => [i.id, [0, 1, 2, 3].map((index) => ({ index, uuid: `GPU-${index}`, model: 'h100', healthy: true }))])),
        seqs: new Map(items.map((i) => [i.id, 10])),
        pruned: new Map(),
      }),
      advanceStreamMany: async (items: unknown[]) => items.map(() => true),
    });
    const jobs = strict<JobsRepository>('jobs', {
      placements: async (filter: { onNodes?: string[] } = {}) => {
        state.reads.push(filter.onNodes ? [...filter.onNodes].sort() : 'all');
        return filter.onNodes ? state.placements.filter((j) => j.placement.some((p) => filter.onNodes!.includes(p.nodeId))) : state.placements;
      },
      changeHorizon: async () => String(state.xid),
      changedPlacementsSince: async () => {
        const jobs = state.changed;
        state.changed = [];
        return { jobs, horizon: jobs.length ? String(++state.xid) : null };
      },
      liveStateMany: async (items: unknown[]) => {
        const answer = state.fresh.shift();
        if (!answer || items.length !== 1) throw new Error(`unexpected fresh read of ${items.length} node(s)`);
        return [await answer()];
      },
    });
    const lifecycle = strict<JobLifecycle>('lifecycle', {
      exited: async (_node: string, e: { jobId: string; attempt?: number }) => {
        state.exits.push({ jobId: e.jobId, attempt: e.attempt });
        return true;
      },
    });
    const database = strict<DatabaseHandle>('database', { db: {} });
    fleet = new FleetService(config, clock, wakeups, nodeRepo, jobs, lifecycle, new NuriMetrics(), database);
    const to: string[] = [];
    fleet.attach({ send: (n, m) => (sent.push(m), to.push(n), true), isConnected: () => true });
    const hello = (runningAttempts: Record<string, number> = {}, node = NODE) =>
      fleet!.hello(node, {
        v: WIRE_VERSION,
        type: 'hello',
        node,
        stream: 's1',
        agentVersion: 'test',
        gpuModel: 'h100',
        gpus: [0, 1, 2, 3].map((index) => ({ index, uuid: `GPU-${index}`, model: 'h100' })) as never,
        running: Object.keys(runningAttempts),
        runningAttempts,
      });
    const exit = (attempt: number, seq: number) =>
      fleet!.apply(NODE, 's1', { v: WIRE_VERSION, type: 'job_event', seq, at: Date.parse('2026-12-05T09:00:00Z'), event: { kind: 'exited', jobId: JOB, exitCode: null, signal: null, cause: 'lost', attempt } });
    return { fleet: fleet!, sent, to, state, hello, exit, time };
  }

  it('sends no start of an attempt whose exit was applied while its read was out, and starts the next attempt when it comes', async () => {
    const { fleet, sent, state, hello, exit } = setup();
    // The agent is back after a kill: it runs nothing; its journal holds attempt 3's exit.
    state.placements = [];
    expect((await hello()).send).toEqual([]);

    // A reconcile round reads attempt 3 as running here; its fresh read answers only after
    // the agent's exit of attempt 3 was applied (and the job requeued) — with what it read before.
    const read = later<Map<string, LiveJob>>();
    state.placements = [placed(3)];
    state.fresh.push(() => read.promise);
    fleet.reconcileAll();
    await new Promise((r) => setTimeout(r, 5));
    expect(await exit(3, 11)).toBe('applied');
    expect(state.exits).toEqual([{ jobId: JOB, attempt: 3 }]);
    read.resolve(new Map([[JOB, running(3)]]));
    await fleet.settled();
    expect(sent.filter((m) => m.type === 'start')).toEqual([]);

    // Attempt 4 is placed on the same node: its start goes out, not a stop of attempt 3 that
    // waits for an exit that came already.
    state.placements = [placed(4)];
    state.fresh.push(async () => new Map([[JOB, running(4)]]));
    fleet.reconcileAll();
    await fleet.settled();
    expect(sent.map((m) => [m.type, (m as { attempt?: number }).attempt])).toEqual([['start', 4]]);
  });

  it('still starts an attempt the connection saw no exit of, and stops a job that left the node', async () => {
    const { fleet, sent, state, hello, exit } = setup();
    state.placements = [placed(2)];
    state.fresh.push(async () => new Map([[JOB, running(2)]]));
    expect((await hello()).send.map((m) => [m.type, (m as { attempt?: number }).attempt])).toEqual([['start', 2]]);
    // A stale exit of attempt 1 (an earlier attempt) clears nothing: attempt 2 is not started twice.
    await exit(1, 11);
    fleet.reconcileAll();
    await fleet.settled();
    expect(sent).toEqual([]);
    // The job leaves the node (its read says so): the agent is told to stop attempt 2.
    state.placements = [];
    state.fresh.push(async () => new Map([[JOB, { ...running(2), state: 'pending', onNode: false } as LiveJob]]));
    fleet.reconcileAll();
    await fleet.settled();
    expect(sent.map((m) => [m.type, (m as { attempt?: number }).attempt])).toEqual([['stop', 2]]);
  });

  it('sends a stop again when no exit answered it for 10 s, and not before', async () => {
    const { fleet, sent, state, hello, exit, time } = setup();
    // The agent says it runs attempt 2; the job no longer runs here (requeued while it was away).
    state.placements = [];
    state.fresh.push(async () => new Map([[JOB, { ...running(2), state: 'pending', onNode: false } as LiveJob]]));
    expect((await hello({ [JOB]: 2 })).send.map((m) => [m.type, (m as { attempt?: number }).attempt])).toEqual([['stop', 2]]);
    // Rounds while the answer is awaited send nothing more.
    time.ms += 9_000;
    fleet.reconcileAll();
    await fleet.settled();
    expect(sent).toEqual([]);
    // Unanswered for 10 s (the agent's exit crossed it, or a word was lost): the same stop again.
    time.ms += 1_000;
    state.fresh.push(async () => new Map([[JOB, { ...running(2), state: 'pending', onNode: false } as LiveJob]]));
    fleet.reconcileAll();
    await fleet.settled();
    expect(sent.map((m) => [m.type, (m as { attempt?: number }).attempt, (m as { reason?: string }).reason])).toEqual([['stop', 2, 'reconcile']]);
    // Its exit comes: nothing is left to stop, however long after.
    await exit(2, 11);
    time.ms += 60_000;
    fleet.reconcileAll();
    await fleet.settled();
    expect(sent).toHaveLength(1);
  });

  it('after a dispatch, looks only at the agents of the jobs written since: where a job starts, and where it ran', async () => {
    const { fleet, sent, to, state, hello } = setup();
    state.placements = [];
    await hello({}, NODE);
    await hello({}, NODE2);
    // The first round after the start takes every agent (nothing is known to have changed).
    fleet.reconcileChanged();
    await fleet.settled();
    expect(state.reads).toEqual([[NODE_ID], [NODE2_ID], 'all']); // each hello's node, then the round's
    state.reads = [];
    // A job starts on h100-2: its dispatch reads that node's jobs, and only h100-2 hears of it.
    state.placements = [placed(1, NODE2_ID)];
    state.changed = [{ id: JOB, nodeIds: [NODE2_ID] }];
    state.fresh.push(async () => new Map([[JOB, running(1, NODE2)]]));
    fleet.reconcileChanged();
    await fleet.settled();
    expect(state.reads).toEqual([[NODE2_ID]]);
    expect(sent.map((m) => [m.type, (m as { attempt?: number }).attempt])).toEqual([['start', 1]]);
    expect(to).toEqual([NODE2]);
    // It is requeued (no live GPU any more): the agent told to run it is the one told to stop it.
    state.placements = [];
    state.changed = [{ id: JOB, nodeIds: [] }];
    state.fresh.push(async () => new Map([[JOB, { ...running(1, NODE2), state: 'pending', onNode: false } as LiveJob]]));
    fleet.reconcileChanged();
    await fleet.settled();
    expect(state.reads).toEqual([[NODE2_ID], [NODE2_ID]]);
    expect(sent.map((m) => [m.type, (m as { attempt?: number }).attempt])).toEqual([['start', 1], ['stop', 1]]);
    expect(to).toEqual([NODE2, NODE2]);
    // Nothing written since: nothing read beyond the changes, nothing sent.
    fleet.reconcileChanged();
    await fleet.settled();
    expect(state.reads).toHaveLength(2);
    // The periodic round still takes every agent.
    fleet.reconcileAll();
    await fleet.settled();
    expect(state.reads.at(-1)).toBe('all');
    expect(sent).toHaveLength(2);
  });
});
