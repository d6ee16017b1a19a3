import { parseServerConfig } from '@nuri/config';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RunningServer, startServer } from '../../apps/server/src/bootstrap';

/** The zero-configuration start: embedded PostgreSQL in a data directory, demo center. */
describe('the embedded default', () => {
  const dir = mkdtempSync(join(tmpdir(), 'nuri-embedded-'));
  let server: RunningServer | undefined;
  afterAll(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const start = () =>
    startServer(
      parseServerConfig({
        PORT: '0',
        HOST: '127.0.0.1',
        NURI_DATA_DIR: join(dir, 'data'),
        NURI_AGENT_WORK_DIR: join(dir, 'agents'),
        NURI_DEMO_NODES: '2',
        NURI_SCHEDULER_TICK_MS: '500',
        NURI_LOG_LEVEL: 'error',
      }),
    );

  it('runs a job with no configuration at all and keeps it across a restart', async () => {
    server = await start();
    expect(server.database.kind).toBe('pglite');
    const token = server.demo!.researcherToken;
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const res = await fetch(`${server.url}/v1/jobs`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ name: 'kept', gpus: 1, gpuType: 'any', timeLimitSeconds: 30, command: ['sh', '-c', 'echo kept output; exit 0'] }),
    });
    expect(res.status).toBe(201);
    const { id } = (await res.json()) as { id: string };
    let job: any;
    for (let i = 0; i < 200; i++) {
      job = await (await fetch(`${server.url}/v1/jobs/${id}`, { headers })).json();
      if (job.state === 'completed') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(job).toMatchObject({ state: 'completed', exitCode: 0 });
    // Its output through the API: api and gateway in one process, on the embedded database.
    const logs = await fetch(`${server.url}/v1/jobs/${id}/logs`, { headers });
    expect(logs.status).toBe(200);
    expect(await logs.text()).toBe('kept output\n');
    await server.close();

    // Same data directory: the job, its transitions and the seeded center are still there;
    // the demo prints fresh tokens (old ones are only stored hashed, and still valid).
    server = await start();
    const again: any = await (await fetch(`${server.url}/v1/jobs/${id}`, { headers })).json();
    expect(again).toMatchObject({ id, state: 'completed', exitCode: 0 });
    expect(again.transitions).toHaveLength(3);
    const tenants = await (await fetch(`${server.url}/v1/tenants`, { headers: { authorization: `Bearer ${server.demo!.operatorToken}` } })).json();
    expect((tenants as any[]).map((t) => t.name).sort()).toEqual(['kakao', 'kt', 'lg-ai', 'naver', 'skt']);
  });
});
