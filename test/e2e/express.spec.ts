import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCenter, type TestCenter } from '../support/center';
import { until } from '../support/http';

/** A counter or gauge's value on /metrics (0 when the series is absent). */
async function metric(url: string, series: string): Promise<number> {
  const name = series.replace(/\{.*$/, '').replace(/_(count|sum|bucket)$/, '');
  const text = await (await fetch(`${url}/metrics?name=${name}`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

/**
 * Express starts in the live product (issue 13): a job that can start starts on its submission,
 * without a full pass, and one that cannot still gets its reason at once from the full pass its
 * submission then asks for. Ticks are 10 minutes apart here, so every pass is one that was asked for.
 */
describe('a submitted job starts between full passes', () => {
  let c: TestCenter;
  const passes = () => metric(c.server.url, 'nuri_scheduler_pass_duration_seconds_count');
  const express = () => metric(c.server.url, 'nuri_scheduler_express_starts_total');

  beforeAll(async () => {
    c = await startCenter({
      name: 'express',
      vars: { NURI_SCHEDULER_TICK_MS: '600000' },
      tenants: [{ name: 'kakao', user: 'ryan', guaranteed: 8, limit: 8 }],
      nodes: ['n1'],
    });
    // The node coming up asked for a pass; express starts plan on what it left.
    await until('a first pass', async () => (await passes()) >= 1);
  });
  afterAll(async () => {
    await c?.stop();
  });

  it('starts what can start by express alone, and a full pass explains what cannot', async () => {
    const token = c.tokens.ryan!;
    // Whatever the node's arrival asked for has run.
    await new Promise((r) => setTimeout(r, 500));
    const before = await passes();
    const a = (await c.api(token, 'POST', '/v1/jobs', { name: 'a', gpus: 4, gpuType: 'h100', timeLimitSeconds: 600, command: ['sleep', '30'] })).body;
    const running = await until('a running', async () => {
      const j = (await c.api(token, 'GET', `/v1/jobs/${a.id}`)).body;
      return j.state === 'running' && j;
    });
    expect(running.placement[0].node).toBe('n1');
    expect(await express()).toBe(1);
    // Started without a full pass: none was asked for.
    await new Promise((r) => setTimeout(r, 500));
    expect(await passes()).toBe(before);

    // Over kakao's limit while a runs (4 + 8 > 8): express cannot start it, and its submission
    // asks for the full pass that says why (with a 10-minute tick, nothing else would).
    const b = (await c.api(token, 'POST', '/v1/jobs', { name: 'b', gpus: 8, gpuType: 'h100', timeLimitSeconds: 600, command: ['true'] })).body;
    const waiting = await until(
      'b explained',
      async () => {
        const j = (await c.api(token, 'GET', `/v1/jobs/${b.id}`)).body;
        return j.reason && j;
      },
      10_000,
    );
    expect(waiting.state).toBe('pending');
    expect(waiting.reasonCode).toBe('over_quota_limit');
    expect(await passes()).toBeGreaterThan(before);
    expect(await express()).toBe(1);
  });

  it('leaves a job with a dependency to the full pass, even with its GPUs free', async () => {
    const token = c.tokens.ryan!;
    // b (8 GPUs, over the limit) is cancelled: a (4 GPUs) runs, 4 are free within kakao's limit.
    const list = (await c.api(token, 'GET', '/v1/jobs?state=pending')).body.items as { id: string }[];
    for (const j of list) await c.api(token, 'POST', `/v1/jobs/${j.id}/cancel`);
    const running = (await c.api(token, 'GET', '/v1/jobs?state=running')).body.items as { id: string }[];
    expect(running).toHaveLength(1);
    const before = await express();
    const d = (await c.api(token, 'POST', '/v1/jobs', { name: 'd', gpus: 2, gpuType: 'h100', timeLimitSeconds: 600, command: ['true'], dependency: `afterok:${running[0]!.id}` })).body;
    const held = await until(
      'd explained',
      async () => {
        const j = (await c.api(token, 'GET', `/v1/jobs/${d.id}`)).body;
        return j.reason && j;
      },
      10_000,
    );
    expect(held.state).toBe('pending');
    expect(held.dependencies[0]).toMatchObject({ job: running[0]!.id, satisfied: false });
    expect(await express()).toBe(before);
    // Without the dependency, the same job starts by express at once.
    const e = (await c.api(token, 'POST', '/v1/jobs', { name: 'e', gpus: 2, gpuType: 'h100', timeLimitSeconds: 600, command: ['sleep', '30'] })).body;
    await until('e running', async () => (await c.api(token, 'GET', `/v1/jobs/${e.id}`)).body.state === 'running');
    expect(await express()).toBe(before + 1);
  });
});
