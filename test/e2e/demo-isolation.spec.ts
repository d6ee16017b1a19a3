import { parseServerConfig } from '@nuri/config';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RunningServer, startServer } from '../../apps/server/src/bootstrap';

/**
 * `npm start` as root (CI, the development machines): the demo's in-process agents run each
 * job as its own unprivileged uid in its own cgroup, so a job cannot read the server's
 * environment through /proc/<ppid>/environ, and the node view says what isolation holds.
 */
describe('the demo as root', () => {
  const dir = mkdtempSync(join(tmpdir(), 'nuri-demo-iso-'));
  let server: RunningServer | undefined;
  afterAll(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs jobs unprivileged, in cgroups, with output where the README says, and shows it in the node view', async () => {
    expect(process.getuid?.(), 'this test asserts what the demo does as root (CI runs as root)').toBe(0);
    server = await startServer(
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
    const headers = { authorization: `Bearer ${server.demo!.researcherToken}`, 'content-type': 'application/json' };
    const script = 'id -u; cat /proc/$PPID/environ >/dev/null 2>&1 && echo "server environ: READ" || echo "server environ: refused"; cat /proc/self/cgroup';
    const res = await fetch(`${server.url}/v1/jobs`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ name: 'who', gpus: 1, gpuType: 'any', timeLimitSeconds: 30, command: ['sh', '-c', script] }),
    });
    expect(res.status).toBe(201);
    const { id } = (await res.json()) as { id: string };
    let job: any;
    for (let i = 0; i < 200; i++) {
      job = await (await fetch(`${server.url}/v1/jobs/${id}`, { headers })).json();
      if (['completed', 'failed'].includes(job.state)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(job).toMatchObject({ state: 'completed', exitCode: 0 });
    const nodeName = job.placement[0].node as string;
    const log = join(dir, 'agents', nodeName, 'output', id, 'output.log');
    const out = readFileSync(log, 'utf8');
    expect(Number(out.split('\n')[0])).toBeGreaterThanOrEqual(200_000);
    expect(out).toContain('server environ: refused');
    expect(out).toMatch(new RegExp(`^\\d+:pids:.*/nuri/w[0-9a-f]+/job-${id}\\.`, 'm'));
    expect(statSync(log).uid).toBe(0);

    const node: any = await (await fetch(`${server.url}/v1/nodes/${nodeName}`, { headers })).json();
    expect(node.isolation).toMatchObject({ cgroup: 'v1', pids: true, devices: true, uids: 'range' });
  });
});
