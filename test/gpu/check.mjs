#!/usr/bin/env node
// A real-GPU smoke check, for a host with NVIDIA GPUs and nvidia-smi (no PostgreSQL needed):
// the product (PGlite, no demo) and the real agent with the nvidia-smi collector run as
// separate processes on loopback; this host is registered as an h100 node, a 1-GPU job runs on
// it, and the report says what the job saw (CUDA_VISIBLE_DEVICES, the GPUs it could open) and
// what telemetry reached /metrics. Needs `npm run build` first.
//   node test/gpu/check.mjs <out-dir>
import { spawn, execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync, mkdtempSync, createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const out = resolve(process.argv[2] ?? 'gpu-check');
mkdirSync(out, { recursive: true });
const work = mkdtempSync(join(tmpdir(), 'nuri-gpu-'));
chmodSync(work, 0o755); // jobs run as their own uid and must reach their directories under it
const port = 18080;
const base = `http://127.0.0.1:${port}`;
const boot = 'gpu-check-bootstrap-token-0123456789';
const report = { startedAt: new Date().toISOString(), steps: [] };
const step = (name, data) => {
  report.steps.push({ name, at: new Date().toISOString(), data });
  console.log(`== ${name}`, typeof data === 'string' ? data : JSON.stringify(data));
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const procs = [];
function start(name, args, env) {
  const log = createWriteStream(join(out, `${name}.log`));
  const p = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  p.stdout.pipe(log);
  p.stderr.pipe(log);
  procs.push(p);
  return p;
}
async function api(token, method, path, body) {
  const r = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  if (!r.ok) throw new Error(`${method} ${path}: HTTP ${r.status} ${text}`);
  return json;
}
async function until(what, fn, ms) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

let failed = false;
try {
  step('nvidia-smi -L', execFileSync('nvidia-smi', ['-L']).toString().trim());
  start('server', ['--max-old-space-size=768', 'dist/apps/server/src/main.js'], {
    PORT: String(port),
    HOST: '127.0.0.1',
    NURI_DEMO: '0',
    NURI_DATA_DIR: join(work, 'data'),
    NURI_BOOTSTRAP_TOKEN: boot,
    NURI_SCHEDULER_TICK_MS: '1000',
    NURI_SAMPLE_INTERVAL_MS: '1000',
  });
  await until('the server', async () => (await fetch(`${base}/healthz`)).ok, 60_000);
  await api(boot, 'POST', '/v1/tenants', { name: 'lab', displayName: 'Lab', quotas: [{ gpuType: 'h100', guaranteed: 1, limit: 8 }] });
  await api(boot, 'POST', '/v1/users', { name: 'alice', tenant: 'lab', role: 'researcher' });
  const alice = (await api(boot, 'POST', '/v1/tokens', { user: 'alice' })).token;
  const node = await api(boot, 'POST', '/v1/nodes', { name: 'gpu-host', gpuType: 'h100', rack: 'rack-1', leafSwitch: 'leaf-1' });
  const tokenFile = join(work, 'node-token');
  writeFileSync(tokenFile, node.agentToken, { mode: 0o600 });
  start('agent', [
    'dist/apps/agent/src/main.js',
    '--collector', 'nvidia-smi',
    '--gateway-url', `ws://127.0.0.1:${port}/agent`,
    '--node-name', 'gpu-host',
    '--node-token-file', tokenFile,
    '--work-dir', join(work, 'agent'),
    '--sample-interval-seconds', '1',
    '--grace-seconds', '2',
    ...(process.getuid?.() === 0 ? ['--uid-range', '200000-200999'] : []),
  ]);
  const up = await until('the node up with its GPUs', async () => {
    const n = await api(boot, 'GET', '/v1/nodes/gpu-host');
    return n.state === 'up' && n.gpus?.length > 0 ? n : undefined;
  }, 60_000);
  step('node', up);
  const py = (() => {
    try {
      return execFileSync('sh', ['-c', 'command -v python3'], { encoding: 'utf8' }).trim();
    } catch {
      return '';
    }
  })();
  const probe = py
    ? `${py} -c "import torch; n=torch.cuda.device_count(); print('torch devices', n, [torch.cuda.get_device_name(i) for i in range(n)]); x=torch.randn(2048,2048,device='cuda'); print('matmul on', x.device, bool(torch.isfinite((x@x).sum())))" 2>&1 | tail -3`
    : 'echo no python3';
  const script = `echo CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES CUDA_DEVICE_ORDER=$CUDA_DEVICE_ORDER; id -u; nvidia-smi -L 2>&1; ls -l /dev/nvidia* 2>&1 | head -5; ${probe}`;
  const job = await api(alice, 'POST', '/v1/jobs', { name: 'gpu-check', gpus: 1, gpuType: 'h100', timeLimitSeconds: 300, command: ['sh', '-c', script] });
  const submitted = Date.now();
  const done = await until('the job to end', async () => {
    const j = await api(alice, 'GET', `/v1/jobs/${job.id}`);
    return ['completed', 'failed', 'cancelled', 'timeout', 'node_failed'].includes(j.state) ? j : undefined;
  }, 240_000);
  step('job', { ...done, secondsToEnd: (Date.now() - submitted) / 1000 });
  const logs = await fetch(`${base}/v1/jobs/${job.id}/logs`, { headers: { authorization: `Bearer ${alice}` } }).then((r) => r.text());
  step('job output', logs);
  writeFileSync(join(out, 'job-output.log'), logs);
  await sleep(3000); // a sample or two after the job
  const metrics = await fetch(`${base}/metrics`).then((r) => r.text());
  const gpuLines = metrics.split('\n').filter((l) => /^nuri_(gpu|node)_/.test(l) && l.includes('gpu-host'));
  writeFileSync(join(out, 'metrics-gpu-host.txt'), gpuLines.join('\n') + '\n');
  step('metrics', { series: gpuLines.length, sample: gpuLines.slice(0, 40) });
  if (done.state !== 'completed') failed = true;
} catch (e) {
  failed = true;
  step('error', String(e?.stack ?? e));
} finally {
  for (const p of procs.reverse()) p.kill('SIGTERM');
  await sleep(3000);
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  report.failed = failed;
  writeFileSync(join(out, 'report.json'), JSON.stringify(report, null, 2));
  process.exitCode = failed ? 1 : 0;
}
