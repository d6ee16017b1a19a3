import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../../apps/server/src/bootstrap';
import { startCenter, type TestCenter } from '../support/center';
import { apiClient, until } from '../support/http';


/**
 * Start estimates are calibrated from observed waits (StartCalibration), in the live scheduler
 * as in the simulator.
 *
 * The anti-starvation threshold reaches the live scheduler (NURI_STARVATION_SECONDS; it once
 * fell back to 12 h there while the simulator measured 4 h): a low-priority job that has waited
 * past it queues by age with normal work instead of behind all of it.
 */
describe('aging and start estimates in the live scheduler', () => {
  let server: RunningServer;
  let c: TestCenter;
  let token = '';
  const api = apiClient(() => server.url);
  const call = async (method: string, path: string, body?: unknown, as = token) => (await api(as, method, path, body)).body;
  const job = (id: string) => call('GET', `/v1/jobs/${id}`);

  beforeAll(async () => {
    c = await startCenter({
      name: 'aging',
      vars: { NURI_SCHEDULER_TICK_MS: '200', NURI_STARVATION_SECONDS: '2', NURI_TIMEOUT_GRACE_SECONDS: '1' },
      tenants: [{ name: 'solo', user: 'solo-user', guaranteed: 8, limit: 16 }],
      nodes: ['n1'],
    });
    server = c.server;
    token = c.tokens['solo-user']!;
  });
  afterAll(async () => {
    await c?.stop();
  });

  it('a starving low-priority job goes ahead of younger normal work', async () => {
    const whole = { gpus: 8, gpuType: 'h100', timeLimitSeconds: 600 };
    const blocker = await call('POST', '/v1/jobs', { ...whole, name: 'blocker', command: ['sleep', '600'] });
    await until('blocker running', async () => (await job(blocker.id)).state === 'running');
    const low = await call('POST', '/v1/jobs', { ...whole, name: 'low', priority: 'low', command: ['sleep', '0.2'] });
    const normal = await call('POST', '/v1/jobs', { ...whole, name: 'normal', command: ['sleep', '0.2'] });
    // Fresh, the normal job ranks first; once both have waited 2 s, age decides.
    // Both at once: a pass that ran before the normal job's submit shows the low one first alone.
    await until('the starving low-priority job first in line', async () => (await job(low.id)).queuePosition === 1 && (await job(normal.id)).queuePosition === 2, 15_000);
    await call('POST', `/v1/jobs/${blocker.id}/cancel`);
    await until('low started', async () => (await job(low.id)).state !== 'pending', 15_000);
    expect((await job(normal.id)).state).toBe('pending');
    await until('normal done', async () => !['pending', 'running'].includes((await job(normal.id)).state), 15_000);
  });

  it('start estimates learn from how long jobs really waited: by time limits at first, then scaled down', async () => {
    const whole = { gpus: 8, gpuType: 'h100', timeLimitSeconds: 600 };
    /** A job pending behind a running 600-s job: seconds from now to its estimated start. */
    const estimateBehindBlocker = async () => {
      const blocker = await call('POST', '/v1/jobs', { ...whole, name: 'blocker', command: ['sleep', '600'] });
      await until('blocker running', async () => (await job(blocker.id)).state === 'running', 15_000);
      const probe = await call('POST', '/v1/jobs', { ...whole, name: 'probe', command: ['true'] });
      await until('probe estimated', async () => (await job(probe.id)).estimatedStartAt !== null, 15_000);
      const p = await job(probe.id);
      await call('POST', `/v1/jobs/${probe.id}/cancel`);
      await call('POST', `/v1/jobs/${blocker.id}/cancel`);
      await until('blocker stopped', async () => (await job(blocker.id)).state !== 'running', 15_000);
      return (Date.parse(p.estimatedStartAt) - Date.now()) / 1000;
    };
    // Too few starts seen yet: the estimate is when the blocker reaches its time limit.
    expect(await estimateBehindBlocker()).toBeGreaterThan(500);
    // 24 whole-node jobs at once: each waits behind the others' 600-s limits but runs 0.1 s.
    const quick: { id: string }[] = [];
    for (let i = 0; i < 24; i++) quick.push(await call('POST', '/v1/jobs', { ...whole, name: `quick-${i}`, command: ['sleep', '0.1'] }));
    await until('quick jobs done', async () => (await Promise.all(quick.map((q) => job(q.id)))).every((q) => q.state === 'completed'), 60_000);
    // Jobs started far sooner than their time limits predicted: the same wait is now estimated short.
    expect(await estimateBehindBlocker()).toBeLessThan(120);
    // Operators see the factor on /metrics.
    const text = await (await fetch(`${server.url}/metrics`)).text();
    const scale = Number(/^nuri_scheduler_start_estimate_scale_ratio (\S+)$/m.exec(text)?.[1]);
    expect(scale).toBeGreaterThan(0);
    expect(scale).toBeLessThan(0.2);
  }, 90_000);
});
