/**
 * Agents for `npm run bench:live`, run in their own process (forked by bench/live.ts,
 * commands over IPC). N lightweight raw WebSocket agents speaking the wire protocol: hello
 * (with the jobs they run, so a restarted server reconciles nothing away), heartbeats at the
 * server's interval, samples of G GPUs every BENCH_SAMPLE_SECONDS (0: none), and for each
 * `start` a `started` event (each `stop` an `exited`), as a real agent whose jobs run until
 * stopped. Reconnects with the agent's backoff (full jitter, base 500 ms, cap 30 s).
 */
import WebSocket from 'ws';
import { agentIdentity, connectFleet } from './gateway-shared';

const N = Number(process.env.BENCH_AGENTS ?? 4000);
const GPUS = Number(process.env.BENCH_GPUS ?? 8);
const SAMPLE_S = Number(process.env.BENCH_SAMPLE_SECONDS ?? 5);
const SEED = process.env.BENCH_TOKEN_SEED!;
const url = process.env.BENCH_GATEWAY_URL!;

interface Sim {
  i: number;
  name: string;
  token: string;
  stream: string;
  ws?: WebSocket;
  ready: boolean;
  seq: number;
  attempt: number;
  running: Map<string, number>;
  heartbeatMs: number;
}

const sims: Sim[] = [];
let connected = 0;
let starts = 0;
let closing = false;
const model = (i: number) => (i < Math.ceil(N / 2) ? 'h100' : 'h800');

function connect(s: Sim): void {
  const ws = new WebSocket(url, { headers: { Authorization: `Bearer ${s.token}`, 'X-Nuri-Node': s.name }, handshakeTimeout: 10_000, perMessageDeflate: false });
  s.ws = ws;
  ws.on('open', () => {
    const running = [...s.running.keys()];
    ws.send(
      JSON.stringify({
        v: 1,
        type: 'hello',
        node: s.name,
        stream: s.stream,
        agentVersion: 'bench-live',
        gpuModel: model(s.i),
        gpus: Array.from({ length: GPUS }, (_, index) => ({ index, uuid: `GPU-live-${s.i}-${index}`, model: model(s.i), memoryTotalBytes: 85520809984 })),
        running,
        runningAttempts: Object.fromEntries(s.running),
      }),
    );
  });
  ws.on('message', (data) => {
    const m = JSON.parse(data.toString()) as { type: string; ackedSeq?: number; heartbeatSeconds?: number; jobId?: string; attempt?: number };
    if (m.type === 'welcome') {
      s.seq = Math.max(s.seq, m.ackedSeq ?? 0);
      s.heartbeatMs = (m.heartbeatSeconds ?? 5) * 1000;
      s.ready = true;
      s.attempt = 0;
      connected++;
    } else if (m.type === 'start' && !s.running.has(m.jobId!)) {
      s.running.set(m.jobId!, m.attempt ?? 1);
      starts++;
      event(s, { kind: 'started', jobId: m.jobId, pid: 1000 + (starts % 30000), attempt: m.attempt ?? 1 });
    } else if (m.type === 'stop') {
      const attempt = s.running.get(m.jobId!) ?? m.attempt ?? 1;
      const had = s.running.delete(m.jobId!);
      event(s, { kind: 'exited', jobId: m.jobId, exitCode: null, signal: 'SIGTERM', cause: had ? 'cancelled' : 'lost', attempt });
    }
  });
  ws.on('unexpected-response', () => ws.terminate());
  ws.on('error', () => undefined);
  ws.on('close', () => {
    if (s.ws !== ws) return;
    if (s.ready) connected--;
    s.ready = false;
    s.ws = undefined;
    if (closing) return;
    const ceiling = Math.min(30_000, 500 * 2 ** Math.min(s.attempt++, 30));
    setTimeout(() => connect(s), Math.floor(Math.random() * ceiling));
  });
}

function event(s: Sim, e: object): void {
  if (s.ready && s.ws?.readyState === WebSocket.OPEN) s.ws.send(JSON.stringify({ v: 1, type: 'job_event', seq: ++s.seq, at: Date.now(), event: e }));
}

/** Samples JSON per agent, built once: the generator must stay cheaper than what it measures. */
const gpusJson = new Map<number, string>();
function tick(): void {
  // Every agent speaks at its own phase: 20 buckets of 50 ms per second.
  const now = Date.now();
  const sec = Math.floor(now / 1000);
  const bucket = Math.floor(now / 50) % 20;
  for (let i = bucket; i < sims.length; i += 20) {
    const s = sims[i]!;
    if (!s.ready || s.ws?.readyState !== WebSocket.OPEN) continue;
    if (sec % Math.max(1, Math.round(s.heartbeatMs / 1000)) === s.i % 5) s.ws.send(`{"v":1,"type":"heartbeat","at":${now}}`);
    if (SAMPLE_S > 0 && sec % SAMPLE_S === s.i % SAMPLE_S) {
      let g = gpusJson.get(s.i);
      if (!g) {
        g = JSON.stringify(Array.from({ length: GPUS }, (_, index) => ({ index, uuid: `GPU-live-${s.i}-${index}`, utilization: 0.5, memoryUsedBytes: 40e9, memoryTotalBytes: 85520809984, temperatureCelsius: 50, powerWatts: 400 })));
        gpusJson.set(s.i, g);
      }
      s.ws.send(`{"v":1,"type":"samples","seq":${++s.seq},"at":${now},"gpus":${g}}`);
    }
  }
}

process.on('message', (cmd: { op: string; url?: string }) =>
  // A failed command ends the helper with its error: the parent sees it exit, not a silent stall.
  void (async () => {
    if (cmd.op === 'connect') {
      const c = await connectFleet(
        N,
        (i) => {
          const s: Sim = { ...agentIdentity(SEED, i), ready: false, seq: 0, attempt: 0, running: new Map(), heartbeatMs: 5000 };
          sims.push(s);
          connect(s);
        },
        () => connected,
      );
      process.send!({ op: 'connected', ...c });
    } else if (cmd.op === 'status') {
      process.send!({ op: 'status', connected, starts, running: sims.reduce((n, s) => n + s.running.size, 0) });
    } else if (cmd.op === 'exit') {
      closing = true;
      for (const s of sims) s.ws?.terminate();
      process.exit(0);
    }
  })().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  }),
);
setInterval(tick, 50);
process.send!({ op: 'ready' });
