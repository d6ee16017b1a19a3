import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { JobEvent, StartJob } from '@nuri/contracts';
import { Agent, type AgentOptions } from '../../apps/agent/src/agent';
import { AgentGateway } from '../../apps/server/src/gateway/transport';
import { FakeFleet } from './fake-fleet';

/**
 * The agent's side of "never wait for an exit that cannot come": a start or stop for an
 * attempt the agent does not run is answered with an explicit `exited` of cause `lost` for
 * that attempt, and an attempt that already ran on the node never runs a second time, even
 * after the agent restarts.
 */
const TOKENS = { 'node-a': 'tok-a' };
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(workDir = mkdtempSync(join(tmpdir(), 'nuri-attempts-'))) {
  const fleet = new FakeFleet(TOKENS);
  const gw = new AgentGateway({ fleet, port: 0, pingIntervalMs: 1000 });
  await gw.start();
  cleanups.push(() => gw.stop());
  const agent = (extra: Partial<AgentOptions> = {}) => {
    const a = new Agent({
      gatewayUrl: `ws://127.0.0.1:${gw.port}/agent`,
      nodeName: 'node-a',
      nodeToken: TOKENS['node-a'],
      workDir,
      sampleIntervalMs: 1000,
      backoffBaseMs: 20,
      backoffCapMs: 200,
      graceSeconds: 1,
      simulated: { gpus: 8 },
      ...extra,
    });
    cleanups.push(() => a.stop());
    return a;
  };
  /** Every job event the fleet received for a job, in order. */
  const events = (jobId: string) =>
    fleet.applied.flatMap((a) => (a.message.type === 'job_event' && a.message.event.jobId === jobId ? [a.message.event] : [])) as JobEvent[];
  return { fleet, gw, agent, events, workDir };
}

const start = (jobId: string, attempt: number, command = ['sleep', '30']): StartJob => ({
  v: 1, type: 'start', jobId, command, env: {}, workingDir: null, gpuIndices: [0], timeLimitSeconds: 60, graceSeconds: 1, attempt,
});

describe('agent: starts and stops of attempts it does not run', () => {
  it('answers a stop for a job it never started with a lost exit of that attempt', async () => {
    const { fleet, gw, agent, events } = await setup();
    const a = agent();
    await a.start();
    await a.waitFor(() => a.connected);
    gw.send('node-a', { v: 1, type: 'stop', jobId: 'never-started', reason: 'cancelled', graceSeconds: 1, attempt: 3 });
    await fleet.until(() => events('never-started').length > 0, 5000, 'lost exit');
    expect(events('never-started')).toEqual([expect.objectContaining({ kind: 'exited', cause: 'lost', attempt: 3, exitCode: null })]);
  });

  it('never runs an attempt twice: a repeated start of a finished attempt is answered lost, also after a restart', async () => {
    const { fleet, gw, agent, events, workDir } = await setup();
    const a = agent();
    await a.start();
    await a.waitFor(() => a.connected);
    gw.send('node-a', start('once', 1, ['sh', '-c', 'exit 0']));
    await fleet.until(() => events('once').some((e) => e.kind === 'exited'), 5000, 'first exit');
    await a.waitFor(() => a.stats().pending === 0);
    gw.send('node-a', start('once', 1, ['sh', '-c', 'exit 0']));
    await fleet.until(() => events('once').length === 3, 5000, 'answer to the repeated start');
    expect(events('once').map((e) => [e.kind, e.kind === 'exited' ? e.cause : null, e.attempt])).toEqual([
      ['started', null, 1],
      ['exited', 'exit', 1],
      ['exited', 'lost', 1],
    ]);
    // A new agent process on the same work dir remembers it too; a later attempt does run.
    await a.stop();
    const b = agent();
    await b.start();
    await b.waitFor(() => b.connected);
    gw.send('node-a', start('once', 1, ['sh', '-c', 'exit 0']));
    gw.send('node-a', start('once', 2, ['sh', '-c', 'exit 0']));
    await fleet.until(() => events('once').filter((e) => e.attempt === 2 && e.kind === 'exited').length === 1, 5000, 'attempt 2 ran');
    const after = events('once').slice(3);
    expect(after.filter((e) => e.kind === 'started').map((e) => e.attempt)).toEqual([2]);
    expect(after).toContainEqual(expect.objectContaining({ kind: 'exited', cause: 'lost', attempt: 1 }));
    expect(workDir).toBeTruthy();
  });

  it('leaves a running later attempt alone when a stale start or stop names an earlier one', async () => {
    const { fleet, gw, agent, events } = await setup();
    const a = agent();
    await a.start();
    await a.waitFor(() => a.connected);
    gw.send('node-a', start('job', 5));
    await fleet.until(() => events('job').some((e) => e.kind === 'started'), 5000, 'attempt 5 started');
    gw.send('node-a', start('job', 4));
    await fleet.until(() => events('job').some((e) => e.kind === 'exited'), 5000, 'answer to the stale start');
    await a.waitFor(() => a.stats().pending === 0);
    gw.send('node-a', { v: 1, type: 'stop', jobId: 'job', reason: 'reconcile', graceSeconds: 0, attempt: 4 });
    await fleet.until(() => events('job').filter((e) => e.kind === 'exited').length === 2, 5000, 'two lost answers');
    expect(events('job').filter((e) => e.kind === 'exited')).toEqual([
      expect.objectContaining({ cause: 'lost', attempt: 4 }),
      expect.objectContaining({ cause: 'lost', attempt: 4 }),
    ]);
    expect(a.runner.isRunning('job')).toBe(true);
    expect(a.runner.attempts()).toEqual({ job: 5 });
    // The stop for the attempt that runs does stop it.
    gw.send('node-a', { v: 1, type: 'stop', jobId: 'job', reason: 'cancelled', graceSeconds: 0, attempt: 5 });
    await fleet.until(() => events('job').some((e) => e.kind === 'exited' && e.attempt === 5), 5000, 'attempt 5 exit');
    expect(events('job').at(-1)).toMatchObject({ kind: 'exited', cause: 'cancelled', attempt: 5 });
  });
});
