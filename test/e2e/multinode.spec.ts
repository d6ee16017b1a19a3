import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../apps/agent/src/agent';
import type { RunningServer } from '../../apps/server/src/bootstrap';
import { startCenter, type TestCenter } from '../support/center';
import { apiClient, until } from '../support/http';

const NODES = ['h100-01', 'h100-02'];

/**
 * A 16-GPU job on two nodes, with real processes: each rank is a child process of its node's
 * agent (in-process agents on this machine, each reporting address 127.0.0.1), placed and
 * launched through the real server, scheduler and gateway on a real PostgreSQL.
 */
describe('a job on two nodes', () => {
  let c: TestCenter;
  let server: RunningServer;
  let researcher: string;
  const agents: Agent[] = [];
  const api = apiClient(() => server.url);
  const call = async (method: string, path: string, body?: unknown) => (await api(researcher, method, path, body)).body;

  const submit = async (body: Record<string, unknown>) => {
    const r = await api(researcher, 'POST', '/v1/jobs', { gpuType: 'h100', timeLimitSeconds: 120, ...body });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    return r.body.id as string;
  };
  const ended = (id: string, ms = 60_000) =>
    until(`job ${id} to end`, async () => {
      const j = await call('GET', `/v1/jobs/${id}`);
      return !['pending', 'running'].includes(j.state) && j;
    }, ms);
  /** What rank `rank` of a job wrote (each agent keeps its own rank's output). */
  const output = (rank: number, id: string) => {
    const p = agents[rank]!.runner.logPath(id);
    return existsSync(p) ? readFileSync(p, 'utf8') : '';
  };

  beforeAll(async () => {
    c = await startCenter({
      name: 'multinode',
      vars: { NURI_SCHEDULER_TICK_MS: '300', NURI_TIMEOUT_GRACE_SECONDS: '2' },
      tenants: [{ name: 'naver', user: 'jun', guaranteed: 16, limit: 16 }],
      // Registered out of name order: ranks follow names, not registration.
      nodes: [...NODES].reverse(),
      agent: { address: '127.0.0.1', graceSeconds: 1 },
    });
    server = c.server;
    researcher = c.tokens.jun!;
    agents.push(...NODES.map((n) => c.agents[n]!));
  });
  afterAll(async () => {
    await c?.stop();
  });

  // Rank 0 listens on MASTER_ADDR:MASTER_PORT; rank 1 connects (retrying until rank 0 is up)
  // and sends its rank; each prints its place in the job and what it received.
  const RENDEZVOUS = `
    const net = require('node:net');
    const e = process.env;
    console.log('env rank=' + e.NODE_RANK + ' nuri_rank=' + e.NURI_NODE_RANK + ' node=' + e.NURI_NODE + ' world=' + e.WORLD_SIZE + ' nnodes=' + e.NNODES +
      ' num_nodes=' + e.NURI_NUM_NODES + ' nodelist=' + e.NURI_NODELIST + ' gpus_per_node=' + e.NURI_GPUS_PER_NODE + ' local=' + e.LOCAL_WORLD_SIZE +
      ' master=' + e.MASTER_ADDR + ':' + e.MASTER_PORT + ' home=' + e.HOME);
    if (e.NODE_RANK === '0') {
      const server = net.createServer((c) => c.on('data', (d) => {
        console.log('rank 0 received: ' + d.toString().trim());
        c.end('welcome from rank 0\\n', () => server.close());
      }));
      server.listen(Number(e.MASTER_PORT), e.MASTER_ADDR);
    } else {
      const attempt = () => {
        const c = net.connect(Number(e.MASTER_PORT), e.MASTER_ADDR, () => c.write('rank ' + e.NODE_RANK + '\\n'));
        c.on('data', (d) => { console.log('rank ' + e.NODE_RANK + ' received: ' + d.toString().trim()); c.end(); });
        c.on('error', () => setTimeout(attempt, 100));
      };
      attempt();
    }`;

  it('runs the command once per node with its place in the job; the ranks meet at MASTER_ADDR:MASTER_PORT and the job completes', async () => {
    const id = await submit({ name: 'rendezvous', gpus: 16, command: ['node', '-e', RENDEZVOUS] });
    const job = await ended(id);
    expect(job).toMatchObject({ state: 'completed', exitCode: 0 });
    expect(job.placement.map((p: { node: string }) => p.node)).toEqual(NODES);
    const port = (await c.db.handle.db.selectFrom('jobs').select('master_port').where('id', '=', id).executeTakeFirstOrThrow()).master_port;
    expect(port).toBeGreaterThanOrEqual(29500);
    for (const rank of [0, 1]) {
      const out = output(rank, id);
      expect(out).toContain(
        `env rank=${rank} nuri_rank=${rank} node=${NODES[rank]!} world=16 nnodes=2 num_nodes=2 nodelist=h100-01,h100-02 gpus_per_node=8 local=8 master=127.0.0.1:${port} home=/`,
      );
    }
    expect(output(0, id)).toContain('rank 0 received: rank 1');
    expect(output(1, id)).toContain('rank 1 received: welcome from rank 0');
  }, 120_000);

  it('ends the job failed with rank 1 exit code 3, naming rank and node, and stops rank 0', async () => {
    const program = `
      const e = process.env;
      console.log('pid=' + process.pid);
      if (e.NODE_RANK === '1') setTimeout(() => process.exit(3), 500);
      else setInterval(() => undefined, 1000);`;
    const id = await submit({ name: 'rank1-fails', gpus: 16, command: ['node', '-e', program] });
    const job = await ended(id);
    expect(job).toMatchObject({ state: 'failed', exitCode: 3, reason: 'rank 1 on h100-02: exit code 3' });
    const pid = Number(/pid=(\d+)/.exec(output(0, id))?.[1]);
    expect(pid).toBeGreaterThan(0);
    // Rank 0 is stopped by the server (grace, then kill): its process is gone, the agent reports it.
    await until('rank 0 stopped', async () => !agents[0]!.runner.isRunning(id) && !alive(pid), 30_000);
    // Its later exit changes nothing.
    await new Promise((r) => setTimeout(r, 500));
    expect(await call('GET', `/v1/jobs/${id}`)).toMatchObject({ state: 'failed', exitCode: 3, reason: 'rank 1 on h100-02: exit code 3' });
  }, 120_000);

  it('keeps the job running, its GPUs held, after rank 0 exits 0 while rank 1 still runs, and completes it when rank 1 does', async () => {
    const go = join(c.work, 'go');
    const program = `
      const fs = require('node:fs');
      if (process.env.NODE_RANK === '0') console.log('rank 0 done early');
      else { const t = setInterval(() => { if (fs.existsSync(${JSON.stringify(go)})) { clearInterval(t); console.log('rank 1 done'); } }, 100); }`;
    const id = await submit({ name: 'rank0-early', gpus: 16, command: ['node', '-e', program] });
    await until('rank 0 to have exited', async () => output(0, id).includes('rank 0 done early') && !agents[0]!.runner.isRunning(id), 30_000);
    // The gateway applied rank 0's exit: it is recorded, and the job runs on.
    await until('rank 0 exit recorded', async () => c.db.handle.db.selectFrom('job_rank_exits').select('rank').where('job_id', '=', id).executeTakeFirst(), 20_000);
    // Give a reconcile round the chance to (wrongly) start rank 0 again.
    await new Promise((r) => setTimeout(r, 1500));
    expect(output(0, id).match(/rank 0 done early/g)).toHaveLength(1);
    const mid = await call('GET', `/v1/jobs/${id}`);
    expect(mid).toMatchObject({ state: 'running' });
    expect(mid.placement.map((p: { node: string }) => p.node)).toEqual(NODES);
    const nodes = (await api(c.operator, 'GET', '/v1/nodes')).body;
    const list = Array.isArray(nodes) ? nodes : nodes.items;
    const h1 = list.find((n: { name: string }) => n.name === 'h100-01');
    expect(h1.gpus.filter((g: { job: string | null; allocated: boolean }) => g.job === id && g.allocated)).toHaveLength(8);
    writeFileSync(go, '');
    const job = await ended(id);
    expect(job).toMatchObject({ state: 'completed', exitCode: 0, reason: 'exit code 0 on all 2 nodes' });
    expect(output(1, id)).toContain('rank 1 done');
    rmSync(go);
  }, 120_000);

  it('runs a submitted batch script with its arguments', async () => {
    const id = await submit({ name: 'script', gpus: 8, script: '#!/bin/sh\necho "script args: $# [$1] [$2]"\necho "rank $NURI_NODE_RANK of $NURI_NUM_NODES"\n', command: ['first', 'two words'] });
    const job = await ended(id);
    expect(job).toMatchObject({ state: 'completed', exitCode: 0, script: true });
    const rank = NODES.indexOf(job.placement[0].node);
    expect(output(rank, id)).toContain('script args: 2 [first] [two words]');
    expect(output(rank, id)).toContain('rank 0 of 1');
  }, 120_000);

  it('fails a job whose working directory does not exist on its node, saying so', async () => {
    const id = await submit({ name: 'no-cwd', gpus: 16, command: ['true'], workingDir: '/nonexistent/nuri-project' });
    const job = await ended(id);
    expect(job.state).toBe('failed');
    expect(job.reason).toMatch(/^rank [01] on h100-0[12]: could not start: working directory \/nonexistent\/nuri-project does not exist on node h100-0[12]$/);
  }, 120_000);
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
