/**
 * The observability stack verified for real: the demo center (API, scheduler, gateway,
 * simulated agents over WebSocket, real PostgreSQL) scraped by a real Prometheus on
 * loopback, loading the repository's own prometheus.yml and alert
 * rules. Every panel query of every generated dashboard must come back with data; the
 * rules must load and evaluate cleanly; a critical XID injected on a simulated GPU must
 * fire NuriGpuCriticalXid; a live scrape must pass `promtool check metrics`.
 *
 * Needs `prometheus` and `promtool` (Debian package `prometheus`; `PROMETHEUS=/path` and
 * `PROMTOOL=/path` override the lookup) and PostgreSQL, and FAILS without them.
 *
 * The rules are loaded unchanged: the alert this test waits to fire (NuriGpuCriticalXid)
 * has no `for:`; NuriNodeDown (`for: 3m`) is only required to reach `pending`.
 */
import { DASHBOARD_SPECS, dashboardExpressions, generateDashboards } from '@nuri/metrics';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../apps/server/src/bootstrap';
import { createTestDatabase, type TestDatabase } from '../../libs/db/src/testing';
import { apiClient } from '../support/http';
import { demoCenterConfig } from '../support/config';

const ROOT = resolve(__dirname, '../..');
const PROM_DIR = join(ROOT, 'deploy/prometheus');

/**
 * Panels that show nothing in a healthy demo, by dashboard uid and panel title, with why.
 * Everything else must return at least one series.
 */
const EMPTY_IN_DEMO: Record<string, string> = {
  'nuri-nodes/Agent buffer drops': 'the family exists only once an agent dropped buffered messages (a long disconnection under load)',
  'nuri-nodes/ECC errors': 'the simulated collector reports no ECC errors and has no ECC fault to inject; the panel shows counts > 0 only',
  'nuri-nodes/Uncorrected ECC errors per hour': 'as above: only increases > 0 are shown',
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function binary(envVar: string, name: string): string {
  const found = spawnSync('sh', ['-c', `command -v "\${${envVar}:-${name}}"`], { encoding: 'utf8' });
  const path = found.stdout.trim();
  if (found.status !== 0 || !path) throw new Error(`${name} is not installed; it is required for this test. Install it with: apt-get update && apt-get install -y prometheus`);
  return path;
}

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => ok(port));
    });
  });
}

/**
 * Polls `probe` until it returns a value (not undefined), or throws after `ms` with the
 * last error the probe threw (probes throw to say what they saw).
 */
async function until<T>(what: string, ms: number, probe: () => Promise<T | undefined>, everyMs = 500): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await sleep(everyMs);
  }
}

interface PromResult {
  status: string;
  data: { resultType: string; result: Array<{ metric: Record<string, string>; value?: [number, string]; values?: unknown[] }> };
  warnings?: string[];
  error?: string;
}

/** The token /metrics wants (NURI_METRICS_TOKEN): Prometheus reads it from a file, as deploy/prometheus/README.md says. */
const METRICS_TOKEN = 'metrics-token-for-the-e2e-0123456789';
const metricsAuth = { authorization: `Bearer ${METRICS_TOKEN}` };

/**
 * The repository's prometheus.yml with 1 s intervals, absolute rule paths, a target file for
 * the demo, and its commented `authorization:` lines switched on with the token in a file.
 */
function prometheusConfig(dir: string, target: string): string {
  const targets = join(dir, 'targets');
  mkdirSync(targets, { recursive: true });
  writeFileSync(join(targets, 'nuri.yml'), `- targets: ["${target}"]\n  labels:\n    env: e2e\n`);
  let yml = readFileSync(join(PROM_DIR, 'prometheus.yml'), 'utf8');
  const swap = (from: RegExp, to: string) => {
    const next = yml.replace(from, to);
    if (next === yml) throw new Error(`prometheus.yml changed shape: ${from} not found`);
    yml = next;
  };
  swap(/scrape_interval: 15s/g, 'scrape_interval: 1s');
  swap(/evaluation_interval: 15s/g, 'evaluation_interval: 1s');
  swap(/scrape_timeout: 10s/g, 'scrape_timeout: 1s');
  swap(/- rules\/\*\.yml/, `- ${join(PROM_DIR, 'rules')}/*.yml`);
  swap(/- targets\/\*\.yml/, `- ${targets}/*.yml`);
  const credentials = join(dir, 'nuri-metrics-token');
  writeFileSync(credentials, `${METRICS_TOKEN}\n`, { mode: 0o600 });
  swap(/# authorization:\n(\s*)# {3}type: Bearer\n\s*# {3}credentials_file: \S+/, `authorization:\n$1  type: Bearer\n$1  credentials_file: ${credentials}`);
  return yml;
}

describe('Prometheus end to end: the demo scraped, every dashboard panel answered, rules loaded, an XID alert fired', () => {
  let db: TestDatabase;
  let server: RunningServer;
  let work: string;
  let prom: ChildProcess | undefined;
  let promUrl: string;
  /** The running naver job: the Job dashboard's $job. */
  let naverJob: string;
  let naverNode: string;
  let xidNode: string;
  let downNode: string;

  const api = apiClient(() => server.url);
  const submit = async (token: string, spec: Record<string, unknown>): Promise<string> => {
    const r = await api(token, 'POST', '/v1/jobs', { name: 'obs-e2e', gpus: 8, timeLimitSeconds: 600, command: ['sleep', '300'], ...spec });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    return r.body.id;
  };
  const job = async (token: string, id: string) => (await api(token, 'GET', `/v1/jobs/${id}`)).body;
  const query = async (expr: string): Promise<PromResult> => {
    const res = await fetch(`${promUrl}/api/v1/query?${new URLSearchParams({ query: expr })}`);
    return (await res.json()) as PromResult;
  };
  const queryRange = async (expr: string): Promise<PromResult> => {
    const end = Date.now() / 1000;
    const res = await fetch(`${promUrl}/api/v1/query_range?${new URLSearchParams({ query: expr, start: String(end - 120), end: String(end), step: '5' })}`);
    return (await res.json()) as PromResult;
  };
  /** The single value of an instant query, or undefined while it has no result. */
  const scalar = async (expr: string): Promise<number | undefined> => {
    const r = await query(expr);
    const v = r.data?.result?.[0]?.value?.[1];
    return v === undefined ? undefined : Number(v);
  };

  beforeAll(async () => {
    const prometheusBin = binary('PROMETHEUS', 'prometheus');
    db = await createTestDatabase();
    work = mkdtempSync(join(tmpdir(), 'nuri-obs-e2e-'));
    server = await startServer(
      demoCenterConfig(db.url, join(work, 'agents'), { NURI_SCHEDULER_TICK_MS: '500', NURI_SAMPLE_INTERVAL_MS: '500', NURI_AGENT_HEARTBEAT_SECONDS: '1', NURI_NODE_DOWN_AFTER_SECONDS: '3', NURI_MIN_RUNTIME_BEFORE_PREEMPT_SECONDS: '0', NURI_PREEMPT_GRACE_SECONDS: '1', NURI_TIMEOUT_GRACE_SECONDS: '1', NURI_METRICS_TOKEN: METRICS_TOKEN }),
    );
    const demo = server.demo!;

    // Prometheus on loopback, scraping the demo every second and evaluating the rules every second.
    const promPort = await freePort();
    promUrl = `http://127.0.0.1:${promPort}`;
    const promDir = join(work, 'prometheus');
    mkdirSync(promDir);
    writeFileSync(join(promDir, 'prometheus.yml'), prometheusConfig(promDir, `127.0.0.1:${server.port}`));
    const log = openSync(join(promDir, 'prometheus.log'), 'w');
    prom = spawn(
      prometheusBin,
      [
        `--config.file=${join(promDir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(promDir, 'data')}`,
        `--web.listen-address=127.0.0.1:${promPort}`,
        '--storage.tsdb.retention.time=1h',
      ],
      { stdio: ['ignore', log, log] },
    );
    const exited = new Promise<never>((_, fail) =>
      prom!.once('exit', (code) => fail(new Error(`prometheus exited (${code}): ${readFileSync(join(promDir, 'prometheus.log'), 'utf8').slice(-2000)}`))),
    );
    exited.catch(() => undefined);
    await Promise.race([exited, until('Prometheus /-/ready', 30_000, async () => ((await fetch(`${promUrl}/-/ready`)).ok ? true : undefined))]);

    // The workload: some jobs running, one waiting within its guarantee, one preempted.
    await demo.agents[0]!.waitFor(() => demo.agents.every((a) => a.stats().connected), 20_000);
    const token = async (user: string) => {
      const r = await api(demo.operatorToken, 'POST', '/v1/tokens', { user });
      expect(r.status).toBe(201);
      return r.body.token as string;
    };
    const [skt, lg, kt] = await Promise.all([token('skt-researcher'), token('lg-ai-researcher'), token('kt-researcher')]);
    const naver = demo.researcherToken;
    // lg-ai fills the H800s within its guarantee; skt fills the H100s, half of it borrowed.
    const lgJobs = [await submit(lg, { gpuType: 'h800' }), await submit(lg, { gpuType: 'h800' })];
    const sktJobs = [await submit(skt, { gpuType: 'h100' }), await submit(skt, { gpuType: 'h100' })];
    await until('lg-ai and skt jobs running', 30_000, async () => {
      const states = await Promise.all([...lgJobs.map((id) => job(lg, id)), ...sktJobs.map((id) => job(skt, id))]);
      return states.every((j) => j.state === 'running') ? true : undefined;
    });
    // kt waits (the H800s are lg-ai's guarantee: nothing to reclaim).
    await submit(kt, { gpuType: 'h800' });
    // naver asks within its guarantee: the scheduler reclaims skt's borrowed GPUs.
    naverJob = await submit(naver, { gpuType: 'h100' });
    const running = await until('naver job running after a preemption', 40_000, async () => {
      const j = await job(naver, naverJob);
      return j.state === 'running' ? j : undefined;
    });
    naverNode = running.placement[0].node;
    const names = ['h100-01', 'h100-02', 'h800-01', 'h800-02'];
    const agentOf = (node: string) => demo.agents[names.indexOf(node)]!;
    // On the naver job's GPU: heat (a throttle reason) and a non-critical XID, both labelled with the job.
    const gpu = running.placement[0].gpus[0] as number;
    agentOf(naverNode).injectFault({ kind: 'hot', index: gpu, temperatureCelsius: 97 });
    agentOf(naverNode).injectFault({ kind: 'xid', index: gpu, code: 13 });
    // A critical XID on GPU 0 of the other H100 node.
    xidNode = naverNode === 'h100-01' ? 'h100-02' : 'h100-01';
    agentOf(xidNode).injectFault({ kind: 'xid', index: 0, code: 79 });
    // A node whose agent goes away.
    downNode = 'h800-02';
    await agentOf(downNode).stop();
  }, 180_000);

  afterAll(async () => {
    if (prom && prom.exitCode === null) {
      const gone = new Promise((r) => prom!.once('exit', r));
      prom.kill('SIGTERM');
      await Promise.race([gone, sleep(10_000)]);
      if (prom.exitCode === null) prom.kill('SIGKILL');
    }
    await server?.close();
    await db?.drop();
    if (work) rmSync(work, { recursive: true, force: true });
  }, 60_000);

  it('scrapes the demo with Nuri labels intact and one scheduler leader', async () => {
    // /metrics is closed without the token (Prometheus scrapes with it, from credentials_file).
    expect((await fetch(`${server.url}/metrics`)).status).toBe(401);
    expect((await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${server.demo!.operatorToken}` } })).status).toBe(401);
    await until('up{job="nuri"} == 1', 30_000, async () => {
      const up = await scalar('up{job="nuri"}');
      if (up !== 1) throw new Error(`up is ${up}`);
      return true;
    });
    // Per-GPU series name their job job_id; Prometheus' `job` is the scrape job's on every series, none renamed.
    expect(await scalar('count(nuri_gpu_healthy)')).toBe(await scalar('count(nuri_gpu_healthy{job="nuri"})'));
    expect((await query('count({exported_job!=""})')).data.result).toEqual([]);
    await until(`the naver job's 8 GPUs labelled with it`, 30_000, async () => {
      const n = await scalar(`count(nuri_gpu_healthy{job_id="${naverJob}",tenant="naver"})`);
      if (n !== 8) throw new Error(`count is ${n}`);
      return true;
    });
    // The node whose agent left loses its GPU series; the others keep all 8.
    await until('GPU series of the stopped node gone', 30_000, async () => {
      const r = await query('count by (node) (nuri_gpu_healthy)');
      const by = JSON.stringify(Object.fromEntries(r.data.result.map((s) => [s.metric.node, Number(s.value![1])]).sort()));
      if (by !== JSON.stringify(Object.fromEntries(['h100-01', 'h100-02', 'h800-01'].map((n) => [n, 8])))) throw new Error(by);
      return true;
    });
    expect(await scalar('sum(nuri_scheduler_leader)')).toBe(1);
    expect(await scalar('time() - max(nuri_scheduler_last_pass_success_timestamp_seconds)')).toBeLessThan(10);
  }, 90_000);

  it('exports scheduler figures that agree with the API: allocation, jobs, preemption, shortfall, usage, route templates', async () => {
    await until('scheduler gauges settled', 30_000, async () => {
      const figures = {
        allocated: await scalar('sum(nuri_tenant_allocated_gpus)'),
        gpusAllocated: await scalar('sum(nuri_scheduler_gpus{state="allocated"})'),
        naverRunning: await scalar('sum(nuri_scheduler_jobs{state="running",tenant="naver",gpu_type="h100"})'),
        ktShortfall: await scalar('nuri_tenant_guarantee_shortfall_gpus{tenant="kt",gpu_type="h800"}'),
        ktPending: await scalar('nuri_scheduler_pending_gpus{tenant="kt",gpu_type="h800"}'),
        sktPreempted: await scalar('sum(nuri_scheduler_preemptions_total{tenant="skt",gpu_type="h100",reason="guarantee_reclaim"})'),
      };
      const ok =
        figures.allocated !== undefined &&
        figures.allocated === figures.gpusAllocated &&
        figures.naverRunning === 1 &&
        figures.ktShortfall === 8 &&
        figures.ktPending === 8 &&
        (figures.sktPreempted ?? 0) >= 1;
      if (!ok) throw new Error(JSON.stringify(figures));
      return true;
    });
    // Usage is continuous: naver's counter is its 8 GPUs × the time it has run, within a pass or two.
    const naverJobNow = await job(server.demo!.researcherToken, naverJob);
    const text = await (await fetch(`${server.url}/metrics`, { headers: metricsAuth })).text();
    const used = Number(/^nuri_tenant_gpu_seconds_total\{tenant="naver",gpu_type="h100"\} (\S+)$/m.exec(text)?.[1]);
    const expected = (8 * (Date.now() - Date.parse(naverJobNow.startedAt))) / 1000;
    expect(used).toBeGreaterThan(expected - 8 * 2);
    expect(used).toBeLessThanOrEqual(expected + 0.1);
    // Request durations are labelled with route templates, never ids.
    expect((await query('count(nuri_http_request_duration_seconds_count{route="/v1/jobs/:id",method="GET",status="200"})')).data.result).toHaveLength(1);
    expect((await query('count(nuri_http_request_duration_seconds_count{route=~".*[0-9a-f]{8}-[0-9a-f]{4}.*"})')).data.result).toEqual([]);
  }, 60_000);

  it('sends /metrics gzip-compressed when asked, as Prometheus asks, and plain otherwise', async () => {
    const { request } = await import('node:http');
    const { gunzipSync } = await import('node:zlib');
    const get = (headers: Record<string, string>) =>
      new Promise<{ encoding?: string; body: Buffer }>((ok, fail) => {
        request(`${server.url}/metrics`, { headers: { ...metricsAuth, ...headers } }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => ok({ encoding: res.headers['content-encoding'], body: Buffer.concat(chunks) }));
          res.on('error', fail);
        })
          .on('error', fail)
          .end();
      });
    const gz = await get({ 'accept-encoding': 'gzip' });
    expect(gz.encoding).toBe('gzip');
    const text = gunzipSync(gz.body).toString('utf8');
    expect(text).toMatch(/^nuri_gpu_healthy\{/m);
    expect(gz.body.length).toBeLessThan(Buffer.byteLength(text) / 4);
    const plain = await get({});
    expect(plain.encoding).toBeUndefined();
    expect(plain.body.toString('utf8')).toMatch(/^nuri_gpu_healthy\{/m);
    // Prometheus' scrape asked for gzip too: its own health for the target says the scrape worked.
    expect(await scalar('up{job="nuri"}')).toBe(1);
  }, 30_000);

  it('passes promtool check metrics on a live scrape', async () => {
    const text = await (await fetch(`${server.url}/metrics`, { headers: metricsAuth })).text();
    expect(text).toMatch(/^nuri_gpu_xid_errors_total\{/m);
    const r = spawnSync(binary('PROMTOOL', 'promtool'), ['check', 'metrics'], { input: text, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
    expect(`${r.stdout}${r.stderr}`).toBe('');
    expect(r.status).toBe(0);
  }, 30_000);

  it('loads every alert rule of nuri-alerts.yml and evaluates each without error', async () => {
    const want = [...readFileSync(join(PROM_DIR, 'rules/nuri-alerts.yml'), 'utf8').matchAll(/^\s*- alert: (\w+)/gm)].map((m) => m[1]!).sort();
    expect(want.length).toBeGreaterThan(10);
    const rules = await until('every rule evaluated', 30_000, async () => {
      const r = (await (await fetch(`${promUrl}/api/v1/rules`)).json()) as { status: string; data: { groups: Array<{ rules: Array<{ name: string; type: string; health: string; lastError?: string }> }> } };
      const all = r.data.groups.flatMap((g) => g.rules);
      return all.length === want.length && all.every((x) => x.health !== 'unknown') ? all : undefined;
    });
    expect(rules.map((r) => r.name).sort()).toEqual(want);
    for (const r of rules) expect({ name: r.name, health: r.health, lastError: r.lastError ?? '' }).toEqual({ name: r.name, health: 'ok', lastError: '' });
  }, 60_000);

  it('answers every panel query of every dashboard with data, variables filled in from Prometheus', async () => {
    const dashboards = generateDashboards();
    expect(dashboards.size).toBe(DASHBOARD_SPECS.length);
    const failures: string[] = [];
    const deadline = Date.now() + 60_000;
    let checked = 0;
    for (const [file, json] of dashboards) {
      const uid = file.replace(/\.json$/, '');
      // Variables in definition order (later ones refer to earlier ones), from the label API as Grafana does.
      const values = new Map<string, string>([
        ['__range', '3600s'],
        ['__rate_interval', '1m'],
        ['__interval', '5s'],
      ]);
      const fill = (s: string) =>
        s.replace(/\$\{?(\w+)\}?/g, (whole, name: string) => {
          const v = values.get(name);
          if (v === undefined) throw new Error(`${uid}: variable $${name} has no value`);
          return v;
        });
      for (const v of (json.templating as { list: Array<Record<string, any>> }).list) {
        if (v.type === 'datasource') continue; // the Prometheus this test queries
        if (v.type === 'textbox') {
          values.set(v.name, String(v.query));
          continue;
        }
        const m = /^label_values\((.+),\s*(\w+)\)$/.exec(String(v.definition));
        expect(m, `${uid} $${v.name}: ${v.definition}`).not.toBeNull();
        const selector = fill(m![1]!);
        const got = await until(`${uid} $${v.name} values`, Math.max(1000, deadline - Date.now()), async () => {
          const res = (await (await fetch(`${promUrl}/api/v1/label/${m![2]}/values?${new URLSearchParams({ 'match[]': selector })}`)).json()) as { data: string[] };
          return res.data.length ? res.data : undefined;
        });
        if (v.name === 'job') {
          expect(got, `$job offers the running naver job`).toContain(naverJob);
          values.set('job', naverJob);
        } else {
          // Grafana's multi-value regex format: every value, as with "All".
          values.set(v.name, got.length === 1 ? got[0]! : `(${got.map((x) => x.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')})`);
        }
      }
      const panels = new Map<string, string[]>();
      for (const { panel, expr } of dashboardExpressions(json)) {
        if (panel.startsWith('$')) continue; // variable definitions, resolved above
        panels.set(panel, [...(panels.get(panel) ?? []), fill(expr)]);
      }
      for (const [panel, exprs] of panels) {
        const key = `${uid}/${panel}`;
        for (const [i, expr] of exprs.entries()) {
          checked++;
          const range = await queryRange(expr);
          if (range.status !== 'success' || range.warnings?.length) failures.push(`${key} [${i}] range query: ${range.error ?? range.warnings?.join('; ')}: ${expr}`);
          if (key in EMPTY_IN_DEMO) {
            const r = await query(expr);
            if (r.status !== 'success' || r.warnings?.length) failures.push(`${key} [${i}]: ${r.error ?? r.warnings?.join('; ')}: ${expr}`);
            continue;
          }
          // Counters born during the run need two scrapes before rate()/increase() answer.
          let r = await query(expr);
          while (r.status === 'success' && !r.data.result.length && Date.now() < deadline) {
            await sleep(500);
            r = await query(expr);
          }
          if (r.status !== 'success' || r.warnings?.length) failures.push(`${key} [${i}]: ${r.error ?? r.warnings?.join('; ')}: ${expr}`);
          else if (!r.data.result.length) failures.push(`${key} [${i}]: no data: ${expr}`);
        }
      }
    }
    expect(checked).toBeGreaterThan(60);
    expect(failures).toEqual([]);
  }, 150_000);

  it('fires NuriGpuCriticalXid for the injected XID 79, and NuriNodeDown goes pending for the stopped node', async () => {
    type Alert = { labels: Record<string, string>; state: string };
    const alerts = async () => ((await (await fetch(`${promUrl}/api/v1/alerts`)).json()) as { data: { alerts: Alert[] } }).data.alerts;
    const xid = await until('NuriGpuCriticalXid firing', 60_000, async () =>
      (await alerts()).find((a) => a.labels.alertname === 'NuriGpuCriticalXid' && a.state === 'firing' && a.labels.node === xidNode),
    );
    expect(xid.labels).toMatchObject({ node: xidNode, gpu: '0', xid: '79', severity: 'critical', model: expect.any(String), uuid: expect.stringMatching(/^GPU-/) });
    expect((await query('nuri_gpu_healthy{node="' + xidNode + '",gpu="0"}')).data.result.map((s) => s.value![1])).toEqual(['0']);
    const down = await until('NuriNodeDown pending', 30_000, async () =>
      (await alerts()).find((a) => a.labels.alertname === 'NuriNodeDown' && a.labels.node === downNode && (a.state === 'pending' || a.state === 'firing')),
    );
    expect(down.labels.gpu_type).toBe('h800');
    // No other node is down, and the other critical alerts stay quiet.
    const others = (await alerts()).filter((a) => a.state === 'firing' && a.labels.alertname !== 'NuriGpuCriticalXid');
    expect(others.map((a) => `${a.labels.alertname} ${a.labels.node ?? ''}`)).toEqual([]);
  }, 120_000);
});
