/**
 * npm run bench:gateway — one gateway process (the real server, NURI_ROLES=gateway) on a
 * fresh real-PostgreSQL database with N registered nodes, and a load generator in its own
 * process (bench/gateway-load.ts) simulating N agents × G GPUs reporting every second.
 * Measures samples produced vs acknowledged (acked = applied), sample-to-ack latency, the
 * gateway's RSS peak and CPU; then kills the gateway (SIGKILL) under load, restarts it,
 * and measures how fast every agent is back, that no job event was lost, and how the
 * reconnect attempts spread over time (full jitter).
 *
 * Env: BENCH_AGENTS (4000), BENCH_GPUS (8), BENCH_SECONDS (60), BENCH_AFTER_RESTART_SECONDS (15),
 * BENCH_RESTART (1), DATABASE_URL (postgres://postgres@127.0.0.1:5432/postgres).
 * Every loop is bounded in count and time; loopback only.
 */
import { ChildProcess, fork, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Client } from 'pg';
import { ask, scratchDatabase } from './support';
import { hashToken } from '../apps/server/src/auth/tokens';
import { migrateToLatest, openDatabase } from '../libs/db/src';
import { nodeName, tokenFor } from './gateway-shared';

const N = Number(process.env.BENCH_AGENTS ?? 4000);
const GPUS = Number(process.env.BENCH_GPUS ?? 8);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 60);
const AFTER = Number(process.env.BENCH_AFTER_RESTART_SECONDS ?? 15);
const RESTART = process.env.BENCH_RESTART !== '0';
const PORT = 19000 + (process.pid % 1000);
const SEED = randomBytes(16).toString('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface ProcStat {
  rssPeak: number;
  cpuMs: number;
}

/** Polls /proc for a process: RSS peak and CPU time (user+system). */
function watch(pid: number): { stop(): ProcStat; now(): ProcStat } {
  const tck = 100; // USER_HZ on Linux
  const st: ProcStat = { rssPeak: 0, cpuMs: 0 };
  const read = () => {
    try {
      const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      st.rssPeak = Math.max(st.rssPeak, rss);
      st.cpuMs = ((Number(f[11]) + Number(f[12])) * 1000) / tck;
    } catch {
      /* gone */
    }
  };
  const t = setInterval(read, 250);
  return {
    now: () => (read(), { ...st }),
    stop: () => (clearInterval(t), read(), { ...st }),
  };
}

async function startGateway(dbUrl: string): Promise<{ child: ChildProcess; readyMs: number }> {
  const t0 = Date.now();
  const child = spawn(process.execPath, [resolve(__dirname, '../apps/server/src/main.js')], {
    env: { ...process.env, PORT: String(PORT), HOST: '127.0.0.1', DATABASE_URL: dbUrl, NURI_ROLES: 'gateway', NURI_DEMO: '0', NURI_LOG_LEVEL: 'warn', NURI_AGENT_HEARTBEAT_SECONDS: '5' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  await new Promise<void>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`gateway not ready in 60 s:\n${out}`)), 60_000);
    child.stdout!.on('data', (d) => {
      out += d;
      if (/Nuri is ready/.test(out)) {
        clearTimeout(timer);
        ok();
      }
    });
    child.once('exit', (c) => fail(new Error(`gateway exited with ${c}:\n${out}`)));
  });
  child.stdout!.resume();
  return { child, readyMs: Date.now() - t0 };
}


const mib = (b: number) => `${(b / 1048576).toFixed(0)} MiB`;

function histogram(title: string, xs: number[], binMs: number, bins: number): void {
  console.log(title);
  const counts = new Array(bins).fill(0) as number[];
  for (const x of xs) counts[Math.min(bins - 1, Math.floor(x / binMs))]!++;
  const max = Math.max(1, ...counts);
  counts.forEach((c, i) => {
    const label = i === bins - 1 ? `>=${(i * binMs) / 1000}s` : `${((i * binMs) / 1000).toFixed(1)}-${(((i + 1) * binMs) / 1000).toFixed(1)}s`;
    console.log(`  ${label.padStart(11)} ${String(c).padStart(6)} ${'#'.repeat(Math.round((c / max) * 50))}`);
  });
}

async function scrape(name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${PORT}/metrics`)).text();
  let sum = 0;
  for (const l of text.split('\n')) if (l.startsWith(name) && (!labels || l.includes(labels)) && !l.startsWith('#')) sum += Number(l.split(' ').at(-1));
  return sum;
}

async function main() {
  const scratch = await scratchDatabase(`nuri_bench_gw_${process.pid}`);
  let gw: ChildProcess | undefined;
  let gen: ChildProcess | undefined;
  try {
    // Register the fleet straight through the database (one insert per chunk), not N HTTP calls.
    const t0 = Date.now();
    const handle = await openDatabase({ url: scratch.url, poolSize: 2 });
    await migrateToLatest(handle.db);
    for (let i = 0; i < N; i += 500) {
      const names = Array.from({ length: Math.min(500, N - i) }, (_, k) => nodeName(i + k));
      const rows = await handle.db
        .insertInto('nodes')
        .values(names.map((name, k) => ({ name, gpu_type: 'h100' as const, rack: `rack-${Math.floor((i + k) / 32)}`, leaf_switch: `leaf-${Math.floor((i + k) / 128)}`, agent_token_hash: hashToken(tokenFor(SEED, name)), state: 'down' as const, state_reason: 'agent never connected' })))
        .returning('id')
        .execute();
      await handle.db
        .insertInto('gpus')
        .values(rows.flatMap((r) => Array.from({ length: GPUS }, (_, index) => ({ node_id: r.id, index, uuid: null, model: null }))))
        .execute();
    }
    await handle.close();
    console.log(`registered ${N} nodes × ${GPUS} GPUs in ${Date.now() - t0} ms`);

    const first = await startGateway(scratch.url);
    gw = first.child;
    console.log(`gateway ready in ${first.readyMs} ms (pid ${gw.pid})`);
    let w = watch(gw.pid!);

    gen = fork(resolve(__dirname, 'gateway-load.js'), [], {
      env: { ...process.env, BENCH_AGENTS: String(N), BENCH_GPUS: String(GPUS), BENCH_GATEWAY_URL: `ws://127.0.0.1:${PORT}/agent`, BENCH_TOKEN_SEED: SEED },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    await new Promise<void>((ok) => gen!.once('message', () => ok()));
    const c = await ask<{ connected: number; ms: number }>(gen, { op: 'connect' }, 'connected', 'load generator');
    console.log(`${c.connected}/${N} agents connected in ${c.ms} ms`);

    const cpuBefore = w.now().cpuMs;
    await ask(gen, { op: 'send' }, 'sending', 'load generator');
    const tSend = Date.now();
    const lats: { p50: number; p99: number; max: number; n: number }[] = [];
    for (let s = 0; s < SECONDS; s += 10) {
      await sleep(Math.min(10, SECONDS - s) * 1000);
      const snap = await ask<any>(gen, { op: 'snapshot' }, 'snapshot', 'load generator');
      lats.push(snap);
      const st = w.now();
      console.log(
        `  t=${String(Math.round((Date.now() - tSend) / 1000)).padStart(3)}s connected ${snap.connected} samples produced ${snap.produced} acked ${snap.acked} | ack latency p50 ${snap.p50} ms p99 ${snap.p99} ms max ${snap.max} ms | gateway RSS ${mib(st.rssPeak)} CPU ${((st.cpuMs - cpuBefore) / (Date.now() - tSend) * 100).toFixed(0)}% | generator CPU ${(snap.genCpuMs / 100).toFixed(0)}% loop delay p99 ${snap.genLoopP99} ms`,
      );
    }
    const steadyMs = Date.now() - tSend;
    const st1 = w.now();
    const applied = await scrape('nuri_gateway_messages_total', 'type="samples",result="applied"').catch(() => NaN);
    const lagP = await scrape('nuri_gateway_ingest_lag_seconds_bucket', 'le="0.25"').catch(() => NaN);
    const lagN = await scrape('nuri_gateway_ingest_lag_seconds_count').catch(() => NaN);
    const p99 = Math.max(...lats.map((l) => l.p99));
    console.log(`\nsteady state (${(steadyMs / 1000).toFixed(0)} s, ${N} agents × ${GPUS} GPUs, 1 sample message/agent/s):`);
    console.log(`  gateway: RSS peak ${mib(st1.rssPeak)}; CPU ${((st1.cpuMs - cpuBefore) / 1000).toFixed(1)} s over ${(steadyMs / 1000).toFixed(0)} s = ${(((st1.cpuMs - cpuBefore) / steadyMs) * 100).toFixed(0)}% of one core`);
    console.log(`  sample messages applied (server counter): ${applied}; server-side ingest lag ≤ 250 ms: ${((lagP / lagN) * 100).toFixed(2)}% of ${lagN}`);
    console.log(`  ack latency (sample sent -> ack received, client side) worst 10-s window p99 ${p99} ms`);

    let welcomes: number[] = [];
    let attempts: number[] = [];
    if (RESTART) {
      console.log(`\nkilling the gateway (SIGKILL) under load, restarting it at once`);
      w.stop();
      await ask(gen, { op: 'killed' }, 'noted', 'load generator');
      gw.kill('SIGKILL');
      await new Promise((r) => gw!.once('exit', r));
      const second = await startGateway(scratch.url);
      gw = second.child;
      w = watch(gw.pid!);
      console.log(`gateway back in ${second.readyMs} ms`);
      const tBack = Date.now();
      for (;;) {
        const s = await ask<{ connected: number }>(gen, { op: 'status' }, 'status', 'load generator');
        if (s.connected >= N || Date.now() - tBack > 120_000) break;
        await sleep(250);
      }
      await sleep(AFTER * 1000);
    }
    const d = await ask<any>(gen, { op: 'drain' }, 'drained', 'load generator', 60_000);
    welcomes = d.welcomes;
    attempts = d.attempts;
    // Server side: every job event's seq is recorded for its stream (applied exactly once).
    const check = new Client({ connectionString: scratch.url });
    await check.connect();
    const rows = (await check.query('select n.name, s.stream, s.last_seq from agent_streams s join nodes n on n.id = s.node_id')).rows as { name: string; stream: string; last_seq: string }[];
    const up = Number((await check.query(`select count(*) from nodes where state = 'up'`)).rows[0].count);
    await check.end();
    const recorded = new Map(rows.map((r) => [`${r.name}/${r.stream}`, Number(r.last_seq)]));
    const missing = (d.lastEventSeq as { node: string; stream: string; seq: number }[]).filter((e) => (recorded.get(`${e.node}/${e.stream}`) ?? -1) < e.seq);
    console.log(`\nresults:`);
    console.log(`  samples: produced ${d.samplesProduced}, acknowledged ${d.samplesAcked}, dropped by agent buffers ${d.samplesDropped}, never acknowledged ${d.unacked} -> lost ${d.samplesProduced - d.samplesAcked - d.samplesDropped}`);
    console.log(`  job events: produced ${d.eventsProduced}, acknowledged ${d.eventsAcked}; streams whose last event seq is missing in the database: ${missing.length}`);
    console.log(`  messages resent after reconnect: ${d.resent}; upgrade refusals: ${d.refused}; nodes up in the database: ${up}/${N}`);
    if (RESTART) {
      const sorted = [...welcomes].sort((a, b) => a - b);
      console.log(`  after the kill: ${welcomes.length}/${N} agents back; last one ${((sorted.at(-1) ?? NaN) / 1000).toFixed(1)} s after the kill (median ${((sorted[Math.floor(sorted.length / 2)] ?? NaN) / 1000).toFixed(1)} s)`);
      histogram('  reconnect attempts after the kill (all, including refused ones):', attempts, 2000, 31);
      histogram('  agents back (welcome) after the kill:', welcomes, 2000, 31);
      const st2 = w.stop();
      console.log(`  restarted gateway: RSS peak ${mib(st2.rssPeak)}, CPU ${(st2.cpuMs / 1000).toFixed(1)} s`);
    }
    const lost = d.samplesProduced - d.samplesAcked - d.samplesDropped;
    const okAll = lost === 0 && d.eventsAcked === d.eventsProduced && missing.length === 0 && p99 <= 200 && st1.rssPeak <= 1024 ** 3;
    console.log(`\ntargets: zero samples lost ${lost === 0 ? 'MET' : 'MISSED'}; p99 ≤ 200 ms ${p99 <= 200 ? 'MET' : 'MISSED'} (${p99} ms); RSS ≤ 1 GiB ${st1.rssPeak <= 1024 ** 3 ? 'MET' : 'MISSED'} (${mib(st1.rssPeak)}); no job event lost ${d.eventsAcked === d.eventsProduced && missing.length === 0 ? 'MET' : 'MISSED'}${RESTART ? `; all back within 60 s ${welcomes.length >= N && Math.max(...welcomes) <= 60_000 ? 'MET' : 'MISSED'}` : ''}`);
    process.exitCode = okAll ? 0 : 1;
  } finally {
    gen?.send({ op: 'exit' });
    gw?.kill('SIGTERM');
    await sleep(1000);
    gw?.kill('SIGKILL');
    await scratch.drop();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
