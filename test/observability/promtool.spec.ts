/**
 * Runs the real promtool over everything Prometheus will read: the config, the alert
 * rules, the rule unit tests, and the exposition of a populated registry. promtool is a
 * requirement (CI installs Debian's `prometheus` package): without it these tests FAIL.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CRITICAL_XIDS } from '@nuri/contracts/gpu';
import { createMetrics, exposedSeriesNames, METRICS } from '@nuri/metrics';
import { populateDemoControlPlane, populateDemoFleet } from '../../libs/metrics/src/demo';

const ROOT = resolve(__dirname, '../..');
const PROM_DIR = join(ROOT, 'deploy/prometheus');
const T0 = 1_750_000_000_000;

/** `PROMTOOL` may name the binary; otherwise it is looked up on PATH. */
function promtoolPath(): string {
  const found = spawnSync('sh', ['-c', 'command -v "${PROMTOOL:-promtool}"'], { encoding: 'utf8' });
  const path = found.stdout.trim();
  if (found.status !== 0 || !path) {
    throw new Error(
      'promtool is not installed. It is required for these tests (Prometheus config, rules, rule unit tests and metric lint). ' +
        'Install it with: apt-get update && apt-get install -y prometheus',
    );
  }
  return path;
}

function promtool(args: string[], input?: string): { code: number; output: string } {
  const r = spawnSync(promtoolPath(), args, { cwd: PROM_DIR, input, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  return { code: r.status ?? -1, output: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

async function exposition(options: Parameters<typeof createMetrics>[0] = {}): Promise<string> {
  const m = createMetrics({ now: () => T0, ...options });
  populateDemoFleet(m, { nodes: 30, atMs: T0 });
  populateDemoControlPlane(m, T0);
  // Rare families: a hardware throttle, a remap failure, an unhealthy GPU.
  m.fleet.applySample('gpu-00002', T0, { index: 1, throttleReasons: ['hw_thermal_slowdown'] });
  m.recordGpuFault('gpu-00002', { index: 2, kind: 'remap_failure' });
  m.setGpuHealthy('gpu-00002', 2, false);
  return m.metrics();
}

describe('promtool', () => {
  it('is installed', () => {
    expect(execFileSync(promtoolPath(), ['--version'], { encoding: 'utf8' })).toMatch(/promtool, version/);
  });

  it('check config: prometheus.yml and its file_sd targets', () => {
    const r = promtool(['check', 'config', 'prometheus.yml']);
    expect(r.output).toMatch(/SUCCESS/);
    expect(r.code, r.output).toBe(0);
  });

  it('check config: with the commented authorization lines switched on (NURI_METRICS_TOKEN), as deploy/prometheus/README.md says', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-prom-auth-'));
    const credentials = join(dir, 'nuri-metrics-token');
    writeFileSync(credentials, 'metrics-token-0123456789abcdef\n', { mode: 0o600 });
    const yml = readFileSync(join(PROM_DIR, 'prometheus.yml'), 'utf8');
    const on = yml.replace(/# authorization:\n(\s*)# {3}type: Bearer\n\s*# {3}credentials_file: \S+/, `authorization:\n$1  type: Bearer\n$1  credentials_file: ${credentials}`);
    expect(on).not.toBe(yml);
    // Beside the original, so its relative rules/ and targets/ paths resolve.
    const file = join(PROM_DIR, `.prometheus-auth-${process.pid}.yml`);
    writeFileSync(file, on);
    try {
      const r = promtool(['check', 'config', file]);
      expect(r.output).toMatch(/SUCCESS/);
      expect(r.code, r.output).toBe(0);
      // The credentials file must exist: promtool says so when it does not (so this check can fail).
      rmSync(credentials);
      expect(promtool(['check', 'config', file]).code).not.toBe(0);
    } finally {
      rmSync(file, { force: true });
    }
  });

  it('check rules: the alert rules', () => {
    const files = readdirSync(join(PROM_DIR, 'rules')).filter((f) => f.endsWith('.yml')).map((f) => `rules/${f}`);
    expect(files.length).toBeGreaterThan(0);
    const r = promtool(['check', 'rules', ...files]);
    expect(r.code, r.output).toBe(0);
  });

  it('test rules: every alert has a passing unit test', () => {
    const tests = readdirSync(join(PROM_DIR, 'tests')).filter((f) => f.endsWith('.yml')).map((f) => `tests/${f}`);
    const r = promtool(['test', 'rules', ...tests]);
    expect(r.code, r.output).toBe(0);
    expect(r.output).not.toMatch(/FAILED/);
    const rules = readFileSync(join(PROM_DIR, 'rules/nuri-alerts.yml'), 'utf8');
    const alerts = [...rules.matchAll(/^\s*- alert: (\S+)/gm)].map((m) => m[1]!);
    const tested = new Set(tests.flatMap((t) => [...readFileSync(join(PROM_DIR, t), 'utf8').matchAll(/alertname: (\S+)/g)].map((m) => m[1]!)));
    expect(alerts.filter((a) => !tested.has(a))).toEqual([]);
  });

  it('check metrics: the exposition of a populated registry is clean', async () => {
    const text = await exposition();
    const r = promtool(['check', 'metrics'], text);
    expect(r.output.trim()).toBe('');
    expect(r.code).toBe(0);
  });

  it('check metrics: with Node.js process metrics too', async () => {
    const r = promtool(['check', 'metrics'], await exposition({ processMetrics: true }));
    expect(r.output.trim()).toBe('');
    expect(r.code).toBe(0);
  });

  it('check metrics: DCGM mode adds only dcgm-exporter\'s own naming findings', async () => {
    const r = promtool(['check', 'metrics'], await exposition({ dcgmCompat: true }));
    const problems = new Set(r.output.split('\n').filter(Boolean));
    const allowed = (line: string) =>
      /^DCGM_FI_\w+ label names should be written in 'snake_case' not 'camelCase'$/.test(line) ||
      /^DCGM_FI_DEV_(TOTAL_ENERGY_CONSUMPTION|ECC_SBE_VOL_TOTAL|ECC_DBE_VOL_TOTAL) counter metrics should have "_total" suffix$/.test(line);
    expect([...problems].filter((l) => !allowed(l))).toEqual([]);
  });

  it('rules use only metrics the library exports', () => {
    const known = exposedSeriesNames();
    known.add('up');
    const text = readFileSync(join(PROM_DIR, 'rules/nuri-alerts.yml'), 'utf8');
    const used = new Set([...text.matchAll(/\b(nuri_[a-z0-9_]+)/g)].map((m) => m[1]!));
    expect([...used].filter((n) => !known.has(n))).toEqual([]);
    // The critical XID list in the rule is the library's.
    const xids = /xid=~"([0-9|]+)"/.exec(text)![1]!.split('|').map(Number);
    expect(xids).toEqual(CRITICAL_XIDS);
    expect(METRICS.gpuXidErrors.name).toBe('nuri_gpu_xid_errors_total');
  });

  it('check config fails loudly on a broken config (the test can see failures)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-prom-'));
    writeFileSync(join(dir, 'bad.yml'), 'scrape_configs:\n  - job_name: x\n    scrape_interval: nonsense\n');
    const r = spawnSync(promtoolPath(), ['check', 'config', join(dir, 'bad.yml')], { encoding: 'utf8' });
    expect(r.status).not.toBe(0);
  });
});
