/**
 * Load generator for `npm run bench:gateway`, run in its own process (forked by
 * bench/gateway.ts, commands and reports over IPC). Simulates N node agents as lightweight
 * raw WebSocket clients speaking the wire protocol: hello, samples of G GPUs every second
 * (phases spread over the second), heartbeats, and job events from some agents. Keeps every
 * sequenced message until acked and resends after reconnecting (exponential backoff, full
 * jitter, base 500 ms, cap 30 s: the agent's defaults), like the real agent.
 */
import { randomUUID } from 'node:crypto';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import WebSocket from 'ws';
import { agentIdentity, connectFleet } from './gateway-shared';
import { percentile } from './support';

const N = Number(process.env.BENCH_AGENTS ?? 4000);
const GPUS = Number(process.env.BENCH_GPUS ?? 8);
const URL_ = process.env.BENCH_GATEWAY_URL!;
const SEED = process.env.BENCH_TOKEN_SEED!;
const EVENT_EVERY = Number(process.env.BENCH_EVENT_AGENT_EVERY ?? 20); // every 20th agent sends job events
const MAX_BUFFERED = 600;


interface Msg {
  seq: number;
  type: 'samples' | 'job_event';
  text: string;
  sentAt: number;
}

interface Sim {
  i: number;
  name: string;
  token: string;
  stream: string;
  ws?: WebSocket;
  ready: boolean;
  seq: number;
  unacked: Msg[];
  attempt: number;
  lastEventSeq: number;
  reconnects: number;
}

const stats = {
  samplesProduced: 0,
  samplesAcked: 0,
  samplesDropped: 0,
  eventsProduced: 0,
  eventsAcked: 0,
  resent: 0,
  connects: 0,
  refused: 0,
  lat: [] as number[],
  /** Reconnect attempt times (ms since the gateway was killed) and welcome times. */
  attempts: [] as number[],
  welcomes: [] as number[],
};
let killedAt: number | null = null;
let sending = false;
let connected = 0;
const sims: Sim[] = [];

const uuids = Array.from({ length: GPUS }, (_, g) => `GPU-bench-${g}`);
/** Each agent's GPU values are rebuilt every 10 s (the generator must stay cheaper than what it measures). */
const gpusJson = new Map<number, { at: number; json: string }>();
function samplesText(s: Sim, seq: number, at: number): string {
  let cached = gpusJson.get(s.i);
  if (!cached || at - cached.at > 10_000) gpusJson.set(s.i, (cached = { at, json: buildGpus(s, at) }));
  return `{"v":1,"type":"samples","seq":${seq},"at":${at},"gpus":${cached.json}}`;
}
function buildGpus(s: Sim, at: number): string {
  const gpus = [];
  for (let g = 0; g < GPUS; g++) {
    const u = ((s.i * 7 + g * 13 + Math.floor(at / 1000)) % 100) / 100;
    gpus.push({
      index: g,
      uuid: `${uuids[g]}-${s.i}`,
      utilization: u,
      memoryUsedBytes: Math.round(u * 80e9),
      memoryTotalBytes: 85520809984,
      temperatureCelsius: 30 + 40 * u,
      temperatureMarginCelsius: 57 - 40 * u,
      powerWatts: 70 + 630 * u,
      energyJoules: Math.round(at / 10) % 1e9,
      smClockHertz: 1980e6,
      eccCorrected: 0,
      eccUncorrected: 0,
      remappedRowsFailure: false,
      throttleReasons: u < 0.01 ? ['gpu_idle'] : [],
    });
  }
  return JSON.stringify(gpus);
}

function connect(s: Sim): void {
  if (killedAt !== null) stats.attempts.push(Date.now() - killedAt);
  const ws = new WebSocket(URL_, { headers: { Authorization: `Bearer ${s.token}`, 'X-Nuri-Node': s.name }, handshakeTimeout: 10_000, perMessageDeflate: false });
  s.ws = ws;
  ws.on('open', () => {
    ws.send(JSON.stringify({ v: 1, type: 'hello', node: s.name, stream: s.stream, agentVersion: 'bench', gpuModel: 'h100', gpus: uuids.map((u, index) => ({ index, uuid: `${u}-${s.i}`, model: 'NVIDIA H100 80GB HBM3', memoryTotalBytes: 85520809984 })), running: [] }));
  });
  ws.on('message', (data) => {
    const now = Date.now();
    const m = JSON.parse(data.toString()) as { type: string; seq?: number; ackedSeq?: number };
    if (m.type === 'ack') ack(s, m.seq!, now);
    else if (m.type === 'welcome') {
      ack(s, m.ackedSeq!, now);
      s.ready = true;
      s.attempt = 0;
      connected++;
      stats.connects++;
      if (killedAt !== null) stats.welcomes.push(now - killedAt);
      for (const u of s.unacked) {
        stats.resent++;
        ws.send(u.text);
      }
    }
  });
  ws.on('unexpected-response', () => {
    stats.refused++;
    ws.terminate();
  });
  ws.on('error', () => undefined);
  ws.on('close', () => {
    if (s.ws !== ws) return;
    if (s.ready) connected--;
    s.ready = false;
    s.ws = undefined;
    s.reconnects++;
    const ceiling = Math.min(30_000, 500 * 2 ** Math.min(s.attempt++, 30));
    setTimeout(() => connect(s), Math.floor(Math.random() * ceiling));
  });
}

function ack(s: Sim, seq: number, now: number): void {
  let k = 0;
  while (k < s.unacked.length && s.unacked[k]!.seq <= seq) {
    const m = s.unacked[k]!;
    if (m.type === 'samples') {
      stats.samplesAcked++;
      stats.lat.push(now - m.sentAt);
    } else stats.eventsAcked++;
    k++;
  }
  if (k) s.unacked.splice(0, k);
}

function send(s: Sim, type: Msg['type'], text: (seq: number) => string, at: number): void {
  const seq = ++s.seq;
  if (type === 'job_event') s.lastEventSeq = seq;
  const m: Msg = { seq, type, text: text(seq), sentAt: at };
  s.unacked.push(m);
  if (type === 'samples') {
    stats.samplesProduced++;
    // Bounded buffer while cut off, oldest samples dropped first (counted), events never.
    const samples = s.unacked.filter((x) => x.type === 'samples');
    if (samples.length > MAX_BUFFERED) {
      s.unacked.splice(s.unacked.indexOf(samples[0]!), 1);
      stats.samplesDropped++;
    }
  } else stats.eventsProduced++;
  if (s.ready && s.ws?.readyState === WebSocket.OPEN) s.ws.send(m.text);
}

function tick(): void {
  // Every agent sends once a second at its own phase: spread over 20 buckets of 50 ms.
  const bucket = Math.floor(Date.now() / 50) % 20;
  if (!sending) return;
  const now = Date.now();
  for (let i = bucket; i < sims.length; i += 20) {
    const s = sims[i]!;
    send(s, 'samples', (seq) => samplesText(s, seq, now), now);
    if (Math.floor(now / 1000) % 5 === s.i % 5 && s.ready) s.ws!.send(JSON.stringify({ v: 1, type: 'heartbeat', at: now }));
    if (s.i % EVENT_EVERY === 0 && Math.floor(now / 1000) % 2 === 0) {
      const jobId = randomUUID();
      send(s, 'job_event', (seq) => JSON.stringify({ v: 1, type: 'job_event', seq, at: now, event: { kind: 'exited', jobId, exitCode: 0, signal: null, cause: 'exit', attempt: 1 } }), now);
    }
  }
}


process.on('message', (cmd: { op: string }) =>
  // A failed command ends the helper with its error: the parent sees it exit, not a silent stall.
  void (async () => {
    if (cmd.op === 'connect') {
      const c = await connectFleet(
        N,
        (i) => {
          const s: Sim = { ...agentIdentity(SEED, i), ready: false, seq: 0, unacked: [], attempt: 0, reconnects: 0, lastEventSeq: 0 };
          sims.push(s);
          connect(s);
        },
        () => connected,
      );
      process.send!({ op: 'connected', ...c });
    } else if (cmd.op === 'send') {
      sending = true;
      stats.lat = [];
      process.send!({ op: 'sending' });
    } else if (cmd.op === 'snapshot') {
      const lat = stats.lat;
      stats.lat = [];
      const cpu = process.cpuUsage(lastCpu);
      lastCpu = process.cpuUsage();
      const loopP99 = Math.round(loop.percentile(99) / 1e6);
      loop.reset();
      process.send!({ op: 'snapshot', genCpuMs: (cpu.user + cpu.system) / 1000, genLoopP99: loopP99, connected, produced: stats.samplesProduced, acked: stats.samplesAcked, p50: percentile(lat, 50), p99: percentile(lat, 99), max: percentile(lat, 100), n: lat.length });
    } else if (cmd.op === 'killed') {
      killedAt = Date.now();
      stats.attempts = [];
      stats.welcomes = [];
      process.send!({ op: 'noted' });
    } else if (cmd.op === 'status') {
      process.send!({ op: 'status', connected });
    } else if (cmd.op === 'drain') {
      sending = false;
      const t0 = Date.now();
      while (sims.some((s) => s.unacked.length) && Date.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 100));
      const unacked = sims.reduce((n, s) => n + s.unacked.length, 0);
      process.send!({
        op: 'drained',
        samplesProduced: stats.samplesProduced,
        samplesAcked: stats.samplesAcked,
        samplesDropped: stats.samplesDropped,
        eventsProduced: stats.eventsProduced,
        eventsAcked: stats.eventsAcked,
        unacked,
        resent: stats.resent,
        refused: stats.refused,
        attempts: stats.attempts,
        welcomes: stats.welcomes,
        lastEventSeq: sims.filter((s) => s.lastEventSeq > 0).map((s) => ({ node: s.name, stream: s.stream, seq: s.lastEventSeq })),
      });
    } else if (cmd.op === 'exit') {
      for (const s of sims) {
        s.ws?.removeAllListeners('close');
        s.ws?.terminate();
      }
      process.exit(0);
    }
  })().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  }),
);
const loop = monitorEventLoopDelay({ resolution: 10 });
loop.enable();
let lastCpu = process.cpuUsage();
setInterval(tick, 50);
process.send!({ op: 'ready' });
