/**
 * npm run bench:multinode — time from a 2-node job's submission to both of its ranks
 * connected, on the demo as `npm start` runs it (embedded PGlite, NURI_DATA_DIR=memory://,
 * the demo's in-process agents, each reporting address 127.0.0.1). Rank 0 listens on
 * MASTER_ADDR:MASTER_PORT and prints the moment rank 1's connection arrives; the figure is
 * that moment minus the moment before POST /v1/jobs (one machine, one clock).
 *
 * Env: BENCH_RUNS (5), BENCH_TICK_MS (the scheduler tick; default the server's 5000: a submit
 * wakes the scheduler at once, so the tick does not bound the figure). Loopback only; every
 * wait is bounded.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseServerConfig } from '@nuri/config';
import { startServer } from '../apps/server/src/bootstrap';

const RUNS = Number(process.env.BENCH_RUNS ?? 5);

// Rank 0 prints when rank 1 connected (epoch ms); rank 1 retries until rank 0 listens.
const PROGRAM = `
  const net = require('node:net');
  const e = process.env;
  if (e.NODE_RANK === '0') {
    const s = net.createServer((c) => { console.log('connected_at=' + Date.now()); c.end(); s.close(); });
    s.listen(Number(e.MASTER_PORT), e.MASTER_ADDR);
  } else {
    const go = () => { const c = net.connect(Number(e.MASTER_PORT), e.MASTER_ADDR, () => c.end()); c.on('error', () => setTimeout(go, 20)); };
    go();
  }`;

async function main() {
  const work = mkdtempSync(join(tmpdir(), 'nuri-bench-multinode-'));
  const server = await startServer(
    parseServerConfig({
      PORT: '0',
      NURI_DATA_DIR: 'memory://',
      NURI_AGENT_WORK_DIR: work,
      NURI_LOG_LEVEL: 'warn',
      ...(process.env.BENCH_TICK_MS ? { NURI_SCHEDULER_TICK_MS: process.env.BENCH_TICK_MS } : {}),
    }),
  );
  try {
    const demo = server.demo!;
    const headers = { authorization: `Bearer ${demo.researcherToken}`, 'content-type': 'application/json' };
    const get = async (id: string) => (await (await fetch(`${server.url}/v1/jobs/${id}`, { headers })).json()) as any;
    const samples: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      const t0 = Date.now();
      const r = await fetch(`${server.url}/v1/jobs`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ name: `bench-2node-${run}`, gpus: 16, gpuType: 'h100', timeLimitSeconds: 120, command: ['node', '-e', PROGRAM] }),
      });
      if (r.status !== 201) throw new Error(`submit: ${r.status} ${await r.text()}`);
      const { id } = (await r.json()) as { id: string };
      // Rank 0 runs on the first node of the placement (nodes in name order).
      let connectedAt: number | undefined;
      const deadline = Date.now() + 60_000;
      while (connectedAt === undefined) {
        if (Date.now() > deadline) throw new Error(`job ${id}: ranks not connected within 60 s: ${JSON.stringify(await get(id))}`);
        const job = await get(id);
        const rank0 = job.placement?.[0]?.node as string | undefined;
        // Each demo agent works in <NURI_AGENT_WORK_DIR>/<node name>.
        const agent = rank0 && demo.agents.find((a) => a.runner.logPath(id).includes(`/${rank0}/output/`));
        const log = agent ? agent.runner.logPath(id) : undefined;
        const m = log && existsSync(log) ? /connected_at=(\d+)/.exec(readFileSync(log, 'utf8')) : null;
        if (m) connectedAt = Number(m[1]!);
        else await new Promise((res) => setTimeout(res, 5));
      }
      samples.push(connectedAt - t0);
      // Let it end before the next run, so each run starts on an idle demo.
      for (let i = 0; i < 600; i++) {
        const j = await get(id);
        if (j.state === 'completed') break;
        if (j.state !== 'running' && j.state !== 'pending') throw new Error(`job ${id} ended ${j.state}: ${j.reason}`);
        await new Promise((res) => setTimeout(res, 50));
      }
    }
    const sorted = [...samples].sort((a, b) => a - b);
    const median = sorted.length % 2 ? sorted[(sorted.length - 1) / 2]! : (sorted[sorted.length / 2 - 1]! + sorted[sorted.length / 2]!) / 2;
    console.log(`2-node job, submission to both ranks connected (demo, memory://, ${RUNS} runs): median ${median} ms, min ${sorted[0]!} ms, max ${sorted.at(-1)} ms`);
    console.log(`samples (ms): ${samples.join(', ')}`);
  } finally {
    await server.close();
    rmSync(work, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
