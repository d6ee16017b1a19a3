/**
 * Scrape benchmark: 4,000 nodes × 8 GPUs (32,000 GPUs) with tenants and jobs, every
 * control-plane metric populated, then full scrapes (render the whole exposition).
 * Targets: a scrape in ≤ 1 s, ≤ 200 MB added memory (state + one scrape).
 * Then the same exposition gzipped as GET /metrics sends it to Prometheus (level 1, the
 * server's), and at zlib's default level 6 for comparison: size on the wire and time.
 *
 *   npm run bench:metrics            (builds, then runs with --expose-gc)
 *   NODES=1000 DCGM=1 npm run bench:metrics
 */
import { populateDemoControlPlane, populateDemoFleet } from '../src/demo';
import { createMetrics } from '../src/nuri-metrics';
import { gzipExposition } from '../src/registry';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';

const NODES = Number(process.env.NODES ?? 4000);
const GPUS = Number(process.env.GPUS_PER_NODE ?? 8);
const DCGM = process.env.DCGM === '1';
const RUNS = Number(process.env.RUNS ?? 5);
const TARGET_SCRAPE_S = 1;
const TARGET_MB = 200;

const gc = (globalThis as { gc?: () => void }).gc;
const mb = (bytes: number) => bytes / 1024 / 1024;
const heap = () => {
  gc?.();
  gc?.();
  const u = process.memoryUsage();
  // Buffers live outside the V8 heap: count them too.
  return u.heapUsed + u.arrayBuffers;
};

async function main(): Promise<void> {
  if (!gc) console.warn('warning: run with --expose-gc for meaningful memory figures');
  const base = heap();
  let now = Date.now();
  const m = createMetrics({ now: () => now, dcgmCompat: DCGM });

  const t0 = process.hrtime.bigint();
  const { jobs, gpus } = populateDemoFleet(m, { nodes: NODES, gpusPerNode: GPUS, atMs: now });
  populateDemoControlPlane(m, now);
  const fillS = Number(process.hrtime.bigint() - t0) / 1e9;
  const stateBytes = heap() - base;

  // One update round: every GPU gets a new sample (what 1 s of agent traffic at 1 Hz costs).
  const u0 = process.hrtime.bigint();
  now += 1000;
  populateDemoFleet(m, { nodes: NODES, gpusPerNode: GPUS, atMs: now });
  const updateS = Number(process.hrtime.bigint() - u0) / 1e9;

  const times: number[] = [];
  let peakBytes = 0;
  let size = 0;
  let lines = 0;
  let last: Buffer = Buffer.alloc(0);
  for (let i = 0; i < RUNS; i++) {
    heap();
    const mu = process.memoryUsage();
    const before = mu.heapUsed + mu.arrayBuffers;
    const s0 = process.hrtime.bigint();
    const text = await m.metricsBuffer();
    times.push(Number(process.hrtime.bigint() - s0) / 1e9);
    const ma = process.memoryUsage();
    peakBytes = Math.max(peakBytes, ma.heapUsed + ma.arrayBuffers - before);
    size = text.length;
    last = text;
    if (i === 0) for (let j = text.indexOf(10); j >= 0; j = text.indexOf(10, j + 1)) lines++;
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)]!;
  const worst = times[times.length - 1]!;
  const addedMb = mb(stateBytes) + mb(peakBytes);

  console.log(`nodes=${NODES} gpus=${gpus} jobs=${jobs} dcgm=${DCGM} node=${process.version}`);
  console.log(`fill (first population):    ${fillS.toFixed(3)} s`);
  console.log(`update round (all GPUs):     ${updateS.toFixed(3)} s`);
  console.log(`scrape: median ${median.toFixed(3)} s, worst ${worst.toFixed(3)} s over ${RUNS} runs (target <= ${TARGET_SCRAPE_S} s)`);
  console.log(`exposition: ${mb(size).toFixed(1)} MB, ${lines} lines`);
  console.log(`memory: state ${mb(stateBytes).toFixed(1)} MB + scrape peak ${mb(peakBytes).toFixed(1)} MB = ${addedMb.toFixed(1)} MB (target <= ${TARGET_MB} MB)`);
  for (const level of [1, 6]) {
    const gz: number[] = [];
    let zipped = 0;
    for (let i = 0; i < Math.min(RUNS, 3); i++) {
      const z0 = process.hrtime.bigint();
      zipped = (await gzipExposition(last, level)).length;
      gz.push(Number(process.hrtime.bigint() - z0) / 1e9);
    }
    gz.sort((a, b) => a - b);
    const gzMedian = gz[Math.floor(gz.length / 2)]!;
    console.log(
      `gzip level ${level}${level === 1 ? ' (served)' : ''}: ${mb(zipped).toFixed(2)} MB (${(size / zipped).toFixed(1)}x smaller), compress ${gzMedian.toFixed(3)} s; scrape + gzip ${(median + gzMedian).toFixed(3)} s`,
    );
  }
  // Over HTTP on loopback, as GET /metrics answers (render, gzip when asked, send): the time a
  // scraper waits from request to last byte, and the bytes it reads.
  const server = createServer((req, res) => {
    void (async () => {
      const text = await m.metricsBuffer();
      const gzip = /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
      const body = gzip ? await gzipExposition(text) : text;
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4', 'content-length': body.length, ...(gzip ? { 'content-encoding': 'gzip' } : {}) });
      res.end(body);
    })();
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const port = (server.address() as AddressInfo).port;
  const scrape = (encoding: string) =>
    new Promise<{ s: number; bytes: number }>((ok, fail) => {
      const t = process.hrtime.bigint();
      request({ host: '127.0.0.1', port, path: '/metrics', headers: { 'accept-encoding': encoding } }, (res) => {
        let bytes = 0;
        res.on('data', (c: Buffer) => (bytes += c.length));
        res.on('end', () => ok({ s: Number(process.hrtime.bigint() - t) / 1e9, bytes }));
        res.on('error', fail);
      })
        .on('error', fail)
        .end();
    });
  for (const encoding of ['identity', 'gzip']) {
    const runs: { s: number; bytes: number }[] = [];
    for (let i = 0; i < Math.min(RUNS, 3); i++) runs.push(await scrape(encoding));
    runs.sort((a, b) => a.s - b.s);
    const mid = runs[Math.floor(runs.length / 2)]!;
    console.log(`HTTP scrape (${encoding === 'gzip' ? 'Accept-Encoding: gzip, as Prometheus' : 'no compression'}): ${mb(mid.bytes).toFixed(2)} MB on the wire, median ${mid.s.toFixed(3)} s`);
  }
  server.close();
  const ok = worst <= TARGET_SCRAPE_S && addedMb <= TARGET_MB;
  console.log(ok ? 'PASS' : 'FAIL');
  if (process.env.BENCH_STRICT === '1' && !ok) process.exitCode = 1;
}

void main();
