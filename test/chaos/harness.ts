/**
 * The chaos harness of issue 11: a production-shaped center (real PostgreSQL, the server's
 * roles as separate processes: one api, two schedulers, two gateways; one agent process per
 * node, simulated collector) runs a seeded mixed workload while seeded faults hit it (kill -9
 * of the leading scheduler, a gateway, the api, agents; an agent frozen past the node-down
 * threshold; PostgreSQL connections terminated). Then it waits for the center to go quiet and
 * checks the invariants (invariants.ts) against the database, the agents' files and /proc.
 *
 * Used by test/chaos/chaos.spec.ts (one seed, short) and `npm run chaos` (test/chaos/main.ts).
 * Everything it starts is killed and its database dropped whatever happens; the run directory
 * (every process's log, harness.log, and on failure db-dump.json) is kept when the run fails.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Client, Pool } from 'pg';
import { FAULT_KINDS, planFaults, type FaultKind, type PlannedFault } from './faults';
import {
  finalChecks,
  overlapMs,
  SampleChecker,
  TERMINAL,
  type AgentLeftovers,
  type CancelRecord,
  type DbAllocation,
  type DbJob,
  type DbJobState,
  type DbOverlap,
  type DbTransition,
  type RunningFileEntry,
  type RunningPlacement,
  type Violation,
} from './invariants';
import { Rng } from './prng';
import { cgroupScopesOf, killJobProcesses, removeCgroupScopes, scanJobProcesses } from './proc-scan';
import { Managed, sleep, type ProcSpec, type Role } from './procs';
import { makeWorkload, type JobSpec } from './workload';

export interface ChaosOptions {
  seed: number;
  /** How long faults are injected; jobs are submitted over the first 80% of it. */
  faultSeconds: number;
  /** Jobs submitted (at least 50 for the issue's figures). */
  jobs: number;
  h100Nodes: number;
  h800Nodes: number;
  /** After the faults stop: how long to wait for every job to end. */
  quiesceTimeoutSeconds: number;
  nodeDownAfterSeconds: number;
  /**
   * NURI_RECONNECT_ALLOWANCE_SECONDS: how long after a leader or gateway starts the scheduler
   * waits before counting an agent's silence. Its default (30 s) is as long as a whole fault
   * phase's gaps, so no frozen agent would ever be marked down; a few seconds lets the node-down
   * path run, at the price that an agent still backing off after a gateway restart may be too.
   */
  reconnectAllowanceSeconds: number;
  /** Allocation records overlapping no longer than this are timestamp skew, not a GPU held twice (see invariants.ts). */
  overlapToleranceMs: number;
  /** How long a process/database mismatch may last (in time the node's agent and gateway were up). */
  persistBoundSeconds: number;
  sampleIntervalMs: number;
  /** Gap between faults (uniform). */
  minFaultGapMs: number;
  maxFaultGapMs: number;
  /** Keep the run directory: 'on-failure' (default), 'always', 'never'. */
  keep: 'on-failure' | 'always' | 'never';
  /** PostgreSQL server to create the run's database on (default: DATABASE_URL or the local default). */
  serverUrl: string;
  /** Progress lines (everything also goes to <runDir>/harness.log). */
  log: (line: string) => void;
  /** Extra environment for the server processes (e.g. a product flag under test). */
  serverEnv: Record<string, string>;
  /**
   * Where the product's sources (apps/, libs/, .swcrc) are taken from: this repository by
   * default; another checkout (e.g. `git archive <commit> apps libs .swcrc`) to try an older
   * version. Built with this repository's node_modules.
   */
  productDir?: string;
}

export interface FaultRecord {
  at: number;
  kind: FaultKind;
  target: string;
  downMs: number;
  note: string;
}

export interface ChaosReport {
  seed: number;
  options: Omit<ChaosOptions, 'log' | 'serverUrl'>;
  runDir: string;
  kept: boolean;
  faults: FaultRecord[];
  faultsByKind: Record<string, number>;
  skippedFaults: number;
  crashes: Record<string, number>;
  jobsSubmitted: number;
  jobsByKind: Record<string, number>;
  finalStates: Record<string, number>;
  requeues: Record<string, number>;
  cancels: Record<string, number>;
  nodesNotUp: string[];
  /**
   * Nodes marked down (their jobs requeued or failed) with no fault on their own agent around
   * that time: the control plane's faults (a gateway killed, a scheduler failover, database
   * connections cut) cost those jobs: "an outage of the control plane kills no healthy job". Fails the run.
   */
  nodeDownsWithoutAgentFault: string[];
  /** "node X is down" lines in the schedulers' logs. */
  nodeDownEvents: number;
  /** Allocation-record overlaps within overlapToleranceMs (not violations; see invariants.ts). */
  allocationSkews: string[];
  quiesced: boolean;
  quiesceMs: number;
  samples: number;
  violations: Violation[];
  harnessErrors: string[];
  wallMs: number;
}

export const DEFAULTS: Omit<ChaosOptions, 'seed' | 'serverUrl' | 'log'> = {
  faultSeconds: 90,
  jobs: 60,
  h100Nodes: 6,
  h800Nodes: 2,
  quiesceTimeoutSeconds: 60,
  nodeDownAfterSeconds: 5,
  reconnectAllowanceSeconds: 4,
  overlapToleranceMs: 0,
  persistBoundSeconds: 20,
  sampleIntervalMs: 500,
  minFaultGapMs: 2500,
  maxFaultGapMs: 6000,
  keep: 'on-failure',
  serverEnv: {},
};

const OPERATOR = `nuri_chaos_operator_${randomBytes(12).toString('hex')}`;
const HARNESS_APP = 'nuri-chaos';
const TENANTS = ['alpha', 'beta'] as const;

/** Runs being cleaned up by `cleanupActiveRuns` (a test timeout, Ctrl-C). */
const active = new Set<() => Promise<void>>();

/** Kills and drops everything of the runs still going in this process. Idempotent. */
export async function cleanupActiveRuns(): Promise<void> {
  await Promise.allSettled([...active].map((f) => f()));
}

export function repoRoot(): string {
  let d = __dirname;
  for (;;) {
    if (existsSync(join(d, 'package.json')) && existsSync(join(d, 'apps', 'server'))) return d;
    const up = dirname(d);
    if (up === d) throw new Error(`no repository root above ${__dirname}`);
    d = up;
  }
}

export function defaultServerUrl(): string {
  return process.env.NURI_TEST_DATABASE_URL ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
}

export async function runChaos(partial: Partial<ChaosOptions> & { seed: number }): Promise<ChaosReport> {
  const o: ChaosOptions = { ...DEFAULTS, serverUrl: defaultServerUrl(), log: () => undefined, ...partial };
  const started = Date.now();
  const root = repoRoot();
  const runId = `${o.seed}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const runDir = mkdtempSync(join(tmpdir(), `nuri-chaos-${o.seed}-`));
  writeFileSync(join(runDir, 'owner'), String(process.pid));
  const agentsDir = join(runDir, 'agents');
  const logsDir = join(runDir, 'logs');
  mkdirSync(agentsDir);
  mkdirSync(logsDir);
  let t0 = Date.now();
  const stamp = () => `+${((Date.now() - t0) / 1000).toFixed(1)}s`;
  const log = (line: string) => {
    appendFileSync(join(runDir, 'harness.log'), `${new Date().toISOString()} ${stamp()} ${line}\n`);
  };
  const say = (line: string) => {
    log(line);
    o.log(`[chaos seed ${o.seed} ${stamp()}] ${line}`);
  };
  const harnessErrors: string[] = [];
  const herr = (m: string) => {
    harnessErrors.push(m);
    say(`HARNESS ERROR ${m}`);
  };

  await reapStale(o.serverUrl, say).catch((e) => say(`stale cleanup failed: ${(e as Error).message}`));

  const procs: Managed[] = [];
  const buildDir = join(root, 'dist', '.chaos', runId);
  const dbName = `nuri_chaos_${process.pid}_${randomBytes(4).toString('hex')}`;
  const admin = new Client({ connectionString: o.serverUrl, application_name: HARNESS_APP });
  let pool: Pool | undefined;
  let dbCreated = false;
  const knownIds = new Set<string>();
  /** Cgroup scopes our agents made (seen on their jobs), removed at the end. */
  const cgroupScopes = new Set<string>();
  const scopeSeen = new Set<number>();
  let stopped = false;
  let cleanedUp = false;
  const cleanup = async () => {
    if (cleanedUp) return;
    cleanedUp = true;
    stopped = true;
    await Promise.allSettled(procs.map((p) => p.end()));
    for (let i = 0; i < 3; i++) {
      const left = scanJobProcesses(agentsDir, knownIds);
      if (!left.length) break;
      killJobProcesses(left);
      await sleep(200);
    }
    if (cgroupScopes.size) {
      await sleep(300);
      removeCgroupScopes(cgroupScopes);
    }
    await pool?.end().catch(() => undefined);
    if (dbCreated) await admin.query(`drop database if exists ${dbName} with (force)`).catch((e) => say(`drop database failed: ${(e as Error).message}`));
    await admin.end().catch(() => undefined);
    rmSync(buildDir, { recursive: true, force: true });
  };
  active.add(cleanup);

  let report: ChaosReport | undefined;
  try {
    // --- build a private copy of the product, so a concurrent build cannot change it under us
    say(`run ${runId}: building into ${buildDir}`);
    execFileSync(join(root, 'node_modules', '.bin', 'swc'), ['apps', 'libs', '-d', buildDir, '--copy-files', '-q', '--ignore', '**/*.spec.ts'], { cwd: o.productDir ?? root, stdio: 'pipe' });
    const serverMain = join(buildDir, 'apps', 'server', 'src', 'main.js');
    const agentMain = join(buildDir, 'apps', 'agent', 'src', 'main.js');
    if (!existsSync(serverMain) || !existsSync(agentMain)) throw new Error(`build did not produce ${serverMain} and ${agentMain}`);

    // --- database
    try {
      await admin.connect();
    } catch (e) {
      throw new Error(`no PostgreSQL server answers at ${o.serverUrl} (set DATABASE_URL): ${(e as Error).message}`, { cause: e });
    }
    await admin.query(`create database ${dbName}`);
    dbCreated = true;
    const dbUrl = withDatabase(o.serverUrl, dbName);
    pool = new Pool({ connectionString: dbUrl, max: 4, application_name: HARNESS_APP });
    pool.on('error', () => undefined);
    const db = pool;

    // --- server roles, each its own process
    const ports = await freePorts(5);
    const baseEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', NURI_CHAOS_RUN: runId, NURI_CHAOS_OWNER: String(process.pid) };
    const supervise = { log: say, crashRestartMs: 1000 };
    const server = (name: string, role: Role, roles: string, port: number, extra: Record<string, string> = {}) =>
      new Managed(
        {
          name,
          role,
          command: process.execPath,
          args: [serverMain],
          port,
          logPath: join(logsDir, `${name}.log`),
          env: {
            ...baseEnv,
            DATABASE_URL: dbUrl,
            PORT: String(port),
            HOST: '127.0.0.1',
            NURI_ROLES: roles,
            NURI_DEMO: '0',
            NURI_SCHEDULER_TICK_MS: '300',
            NURI_NODE_DOWN_AFTER_SECONDS: String(o.nodeDownAfterSeconds),
            NURI_RECONNECT_ALLOWANCE_SECONDS: String(o.reconnectAllowanceSeconds),
            NURI_AGENT_HEARTBEAT_SECONDS: '1',
            NURI_TIMEOUT_GRACE_SECONDS: '1',
            NURI_PREEMPT_GRACE_SECONDS: '1',
            NURI_MIN_RUNTIME_BEFORE_PREEMPT_SECONDS: '5',
            NURI_LOG_LEVEL: 'log',
            ...extra,
            ...o.serverEnv,
          },
        },
        supervise,
      );
    const api = server('api', 'api', 'api', ports[0]!, { NURI_BOOTSTRAP_TOKEN: OPERATOR });
    const schedulers = [server('scheduler-1', 'scheduler', 'scheduler', ports[1]!), server('scheduler-2', 'scheduler', 'scheduler', ports[2]!)];
    const gateways = [server('gateway-1', 'gateway', 'gateway', ports[3]!), server('gateway-2', 'gateway', 'gateway', ports[4]!)];
    procs.push(api, ...schedulers, ...gateways);
    // The api first (it migrates the empty database), then the rest at once.
    api.start();
    if (!(await api.ready(60_000))) throw new Error(`api did not become ready; see ${api.spec.logPath}`);
    for (const p of [...schedulers, ...gateways]) p.start();
    for (const p of [...schedulers, ...gateways]) if (!(await p.ready(60_000))) throw new Error(`${p.name} did not become ready; see ${p.spec.logPath}`);
    say(`servers up: api :${ports[0]}, schedulers :${ports[1]} :${ports[2]}, gateways :${ports[3]} :${ports[4]}`);

    // --- tenants, users, tokens and nodes through the REST API, as an operator would
    const apiCall = (token: string, method: string, path: string, body?: unknown) => http(api.spec.port!, token, method, path, body);
    const must = async (method: string, path: string, body: unknown) => {
      const r = await apiCall(OPERATOR, method, path, body);
      if (r.status < 200 || r.status >= 300) throw new Error(`${method} ${path}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
      return r.body;
    };
    const h100Share = (o.h100Nodes * 8) / TENANTS.length;
    const h800Share = (o.h800Nodes * 8) / TENANTS.length;
    const tokens: Record<string, string> = {};
    for (const t of TENANTS) {
      const quotas = [{ gpuType: 'h100', guaranteed: h100Share, limit: o.h100Nodes * 8 }];
      if (o.h800Nodes) quotas.push({ gpuType: 'h800', guaranteed: h800Share, limit: o.h800Nodes * 8 });
      await must('POST', '/v1/tenants', { name: t, displayName: `Tenant ${t}`, quotas });
      await must('POST', '/v1/users', { name: `${t}-researcher`, tenant: t, role: 'researcher' });
      tokens[t] = (await must('POST', '/v1/tokens', { user: `${t}-researcher` })).token;
    }
    const nodeNames = [...Array.from({ length: o.h100Nodes }, (_, i) => `h100-${i + 1}`), ...Array.from({ length: o.h800Nodes }, (_, i) => `h800-${i + 1}`)];
    const agents: Managed[] = [];
    const gatewayOf = new Map<string, Managed>();
    const agentOf = new Map<string, Managed>();
    for (const [i, name] of nodeNames.entries()) {
      const model = name.startsWith('h800') ? 'h800' : 'h100';
      const node = await must('POST', '/v1/nodes', { name, gpuType: model, rack: `rack-${(i % 4) + 1}`, leafSwitch: `leaf-${(i % 2) + 1}` });
      const gw = gateways[i % gateways.length]!;
      const workDir = join(agentsDir, name);
      mkdirSync(workDir, { recursive: true });
      const spec: ProcSpec = {
        name: `agent-${name}`,
        role: 'agent',
        command: process.execPath,
        args: [
          agentMain,
          '--collector', 'simulated',
          '--sim-model', model,
          '--gateway-url', `ws://127.0.0.1:${gw.spec.port}/agent`,
          '--node-name', name,
          '--node-token', node.agentToken,
          '--work-dir', workDir,
          '--grace-seconds', '1',
          '--sample-interval-seconds', '1',
        ],
        // Reconnect within the server's allowance (an older agent ignores the variable).
        env: { ...baseEnv, NURI_BACKOFF_CAP_SECONDS: '2' },
        logPath: join(logsDir, `agent-${name}.log`),
      };
      const a = new Managed(spec, supervise);
      agents.push(a);
      procs.push(a);
      gatewayOf.set(name, gw);
      agentOf.set(name, a);
    }
    for (const a of agents) a.start();
    const connected = async () => Number((await db.query(`select count(*)::int as n from nodes where state = 'up' and connected`)).rows[0].n);
    for (const end = Date.now() + 60_000; (await connected()) < nodeNames.length; ) {
      if (Date.now() > end) throw new Error(`only ${await connected()} of ${nodeNames.length} agents connected within 60 s; see ${logsDir}`);
      await sleep(250);
    }
    say(`${agents.length} agents connected (${o.h100Nodes} h100, ${o.h800Nodes} h800 nodes)`);

    const healthy = (node: string) => !!agentOf.get(node)?.isUp() && !!gatewayOf.get(node)?.isUp();

    // --- the run
    const faultMs = o.faultSeconds * 1000;
    const specs = makeWorkload({ seed: o.seed, jobs: o.jobs, submitWindowMs: faultMs * 0.8, tenants: TENANTS, h800: o.h800Nodes >= 2, runTag: String(o.seed) });
    const plan = planFaults({ seed: o.seed, durationMs: faultMs, nodeDownAfterSeconds: o.nodeDownAfterSeconds, minGapMs: o.minFaultGapMs, maxGapMs: o.maxFaultGapMs });
    writeFileSync(join(runDir, 'plan.json'), JSON.stringify({ options: { ...o, log: undefined }, jobs: specs, faults: plan }, null, 2));
    say(`${specs.length} jobs over ${(faultMs * 0.8) / 1000} s, ${plan.length} faults over ${o.faultSeconds} s`);
    t0 = Date.now();
    const names = new Map<string, string>(); // job id -> name

    // Sampling: /proc and the database every sampleIntervalMs.
    const checker = new SampleChecker({ persistBoundMs: o.persistBoundSeconds * 1000, maxStepMs: o.sampleIntervalMs * 3, name: (id) => names.get(id) ?? id });
    const sampleOnce = async () => {
      const rows = (
        await db.query<{ id: string; name: string; state: string; attempts: number; gpus: number; nodes: string[] }>(
          `select j.id, j.name, j.state, j.attempts, j.gpus, coalesce(array_agg(distinct n.name) filter (where n.name is not null), '{}') as nodes
             from jobs j left join allocations a on a.job_id = j.id and a.released_at is null left join nodes n on n.id = a.node_id
            group by j.id`,
        )
      ).rows;
      const jobs = new Map<string, DbJobState>();
      const running: RunningPlacement[] = [];
      for (const r of rows) {
        knownIds.add(r.id);
        names.set(r.id, r.name);
        jobs.set(r.id, { state: r.state, attempts: r.attempts, gpus: r.gpus });
        if (r.state === 'running') for (const node of r.nodes) running.push({ jobId: r.id, attempt: r.attempts, node });
      }
      const runningFiles = new Map<string, Map<string, RunningFileEntry>>();
      for (const node of nodeNames) runningFiles.set(node, readRunningFile(join(agentsDir, node, 'running.json')));
      const found = scanJobProcesses(agentsDir, knownIds);
      for (const p of found)
        if (!scopeSeen.has(p.pgid)) {
          scopeSeen.add(p.pgid);
          for (const c of cgroupScopesOf(p.pid)) cgroupScopes.add(c);
        }
      const before = checker.violations().length;
      checker.observe({ at: Date.now() - t0, jobs, running, procs: found, runningFiles, healthy });
      for (const v of checker.violations().slice(before)) say(`VIOLATION ${v.invariant}: ${v.detail}`);
    };

    let sampling = true;
    const sampler = (async () => {
      while (sampling && !stopped) {
        const next = Date.now() + o.sampleIntervalMs;
        try {
          await sampleOnce();
        } catch (e) {
          log(`sample failed: ${(e as Error).message}`);
        }
        await sleep(Math.max(0, next - Date.now()));
      }
    })();

    // Faults.
    const faults: FaultRecord[] = [];
    let skippedFaults = 0;
    const restores: Promise<void>[] = [];
    const downFor = async (p: Managed, kind: FaultKind, downMs: number, note: string) => {
      await p.kill9();
      faults.push({ at: Date.now() - t0, kind, target: p.name, downMs, note });
      say(`FAULT ${kind}: kill -9 ${p.name}${note ? ` (${note})` : ''}; restart in ${downMs} ms`);
      restores.push(
        (async () => {
          await sleep(downMs);
          if (stopped || p.state !== 'down') return;
          p.start();
          say(`restarted ${p.name}`);
        })(),
      );
    };
    const injectOne = async (f: PlannedFault) => {
      const choose = <T>(xs: T[]) => xs[Math.floor(f.pick * xs.length)]!;
      switch (f.kind) {
        case 'kill-scheduler': {
          const ups = schedulers.filter((s) => s.isUp());
          if (!ups.length) return false;
          const leaders = (await Promise.all(ups.map(async (s) => ((await isLeader(s.spec.port!)) ? s : null)))).filter((s): s is Managed => s !== null);
          await downFor(leaders[0] ?? choose(ups), f.kind, f.downMs, leaders.length ? 'the leader' : 'no leader visible: a standby');
          return true;
        }
        case 'kill-gateway':
        case 'kill-api':
        case 'kill-agent': {
          const pool_ = f.kind === 'kill-gateway' ? gateways : f.kind === 'kill-api' ? [api] : agents;
          const ups = pool_.filter((p) => p.isUp());
          if (!ups.length) return false;
          await downFor(choose(ups), f.kind, f.downMs, '');
          return true;
        }
        case 'stop-agent': {
          const ups = agents.filter((p) => p.isUp());
          if (!ups.length) return false;
          const a = choose(ups);
          if (!a.sigstop()) return false;
          faults.push({ at: Date.now() - t0, kind: f.kind, target: a.name, downMs: f.downMs, note: '' });
          say(`FAULT stop-agent: SIGSTOP ${a.name} for ${f.downMs} ms`);
          restores.push(
            (async () => {
              await sleep(f.downMs);
              if (stopped) return;
              a.sigcont();
              say(`SIGCONT ${a.name}`);
            })(),
          );
          return true;
        }
        case 'pg-terminate': {
          const r = await admin.query<{ pid: number; application_name: string }>(
            `select pid, application_name from pg_stat_activity where datname = $1 and pid <> pg_backend_pid() and coalesce(application_name, '') <> $2 order by pid`,
            [dbName, HARNESS_APP],
          );
          if (!r.rows.length) return false;
          const rng = new Rng(Math.floor(f.pick * 2 ** 31), 3);
          let victims = r.rows.filter(() => rng.chance(f.share)).map((x) => x.pid);
          if (!victims.length) victims = [r.rows[Math.floor(f.pick * r.rows.length)]!.pid];
          await admin.query(`select pg_terminate_backend(pid) from unnest($1::int[]) as pid`, [victims]);
          faults.push({ at: Date.now() - t0, kind: f.kind, target: `${victims.length}/${r.rows.length} connections`, downMs: 0, note: '' });
          say(`FAULT pg-terminate: ${victims.length} of ${r.rows.length} connections of ${dbName}`);
          return true;
        }
      }
    };
    const injector = (async () => {
      for (const f of plan) {
        await sleep(Math.max(0, t0 + f.atMs - Date.now()));
        if (stopped) return;
        try {
          if (!(await injectOne(f))) {
            skippedFaults++;
            say(`fault ${f.kind} skipped: no target up`);
          }
        } catch (e) {
          skippedFaults++;
          say(`fault ${f.kind} failed: ${(e as Error).message}`);
        }
      }
    })();

    // Jobs: submitted over the API at their times; some cancelled.
    const jobIdOf = new Map<number, string>();
    const cancels = new Map<string, CancelRecord>();
    const submitDeadline = () => t0 + faultMs + 60_000;
    const submit = async (spec: JobSpec) => {
      await sleep(Math.max(0, t0 + spec.submitAtMs - Date.now()));
      const body = { name: spec.name, gpus: spec.gpus, gpuType: spec.gpuType, timeLimitSeconds: spec.timeLimitSeconds, command: spec.command, requeue: spec.requeue, priority: spec.priority };
      while (!stopped && Date.now() < submitDeadline()) {
        const r = await apiCall(tokens[spec.tenant]!, 'POST', '/v1/jobs', body);
        if (r.status >= 200 && r.status < 300 && r.body?.id) return r.body.id as string;
        if (r.status >= 400 && r.status < 500) {
          herr(`submit ${spec.name}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
          return undefined;
        }
        // No answer (api down) or 5xx: it may have been accepted all the same.
        const found = await db.query<{ id: string }>(`select id from jobs where name = $1`, [spec.name]).catch(() => null);
        if (found?.rows[0]) return found.rows[0].id;
        await sleep(300);
      }
      herr(`submit ${spec.name}: no answer before the deadline`);
      return undefined;
    };
    const stateOf = async (id: string) => (await db.query<{ state: string }>(`select state from jobs where id = $1`, [id]).catch(() => null))?.rows[0]?.state;
    const cancel = async (spec: JobSpec, id: string) => {
      const deadline = Math.max(submitDeadline(), Date.now() + 60_000);
      while (!stopped && Date.now() < deadline) {
        const sentAt = Date.now();
        const r = await apiCall(tokens[spec.tenant]!, 'POST', `/v1/jobs/${id}/cancel`, undefined);
        const answeredAt = Date.now();
        const msg = String(r.body?.message ?? r.body?.error ?? '');
        if (r.status === 200 || r.status === 202 || (r.status === 409 && !/try again/i.test(msg)) || r.status === 404 || r.status === 403) {
          const rec: CancelRecord = { jobId: id, sentAt, answeredAt, status: r.status, note: r.status === 409 ? msg : String(r.body?.state ?? '') };
          cancels.set(id, rec);
          say(`cancel ${spec.name}: ${r.status} ${rec.note}`);
          if (r.status === 404 || r.status === 403) herr(`cancel ${spec.name}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
          return;
        }
        await sleep(300);
      }
      cancels.set(id, { jobId: id, sentAt: Date.now(), answeredAt: Date.now(), status: 'unknown', note: 'no definitive answer' });
      say(`cancel ${spec.name}: no definitive answer`);
    };
    const driveJob = async (spec: JobSpec) => {
      const id = await submit(spec);
      if (!id) return;
      jobIdOf.set(spec.index, id);
      knownIds.add(id);
      names.set(id, spec.name);
      log(`submitted ${spec.name} ${id}: ${spec.kind} ${spec.gpus}x${spec.gpuType} requeue=${spec.requeue} limit=${spec.timeLimitSeconds}s`);
      if (spec.kind === 'cancel-pending') return cancel(spec, id);
      if (spec.kind !== 'cancel-running') return;
      for (const end = Date.now() + 90_000; !stopped && Date.now() < end; await sleep(250)) {
        const st = await stateOf(id);
        if (st === 'running') {
          await sleep(spec.cancelDelayMs);
          return cancel(spec, id);
        }
        if (st && TERMINAL.has(st)) {
          log(`${spec.name} ended ${st} before it was seen running; not cancelled`);
          return;
        }
      }
      log(`${spec.name} never seen running; not cancelled`);
    };
    const driving = Promise.all(specs.map((s) => driveJob(s)));

    await injector;
    await sleep(Math.max(0, t0 + faultMs - Date.now()));
    await Promise.all(restores);
    say(`faults over (${faults.length} injected, ${skippedFaults} skipped); waiting for every process and submission`);
    for (const p of procs) if (p.state === 'down') p.start();
    for (const p of procs) if (p.state === 'stopped') p.sigcont();
    for (const p of [api, ...schedulers, ...gateways]) if (!(await p.ready(30_000))) herr(`${p.name} not ready after the faults`);
    await driving;

    // --- quiescence: every job ended and no job process left
    const q0 = Date.now();
    let quiesced = false;
    while (Date.now() - q0 < o.quiesceTimeoutSeconds * 1000) {
      const live = await db
        .query<{ n: number }>(`select count(*)::int as n from jobs where state not in ('completed', 'failed', 'cancelled', 'timeout', 'node_failed')`)
        .then((r) => r.rows[0]!.n)
        .catch(() => -1);
      if (live === 0 && scanJobProcesses(agentsDir, knownIds).length === 0) {
        quiesced = true;
        break;
      }
      await sleep(500);
    }
    const quiesceMs = Date.now() - q0;
    say(quiesced ? `quiet after ${(quiesceMs / 1000).toFixed(1)} s` : `NOT quiet after ${o.quiesceTimeoutSeconds} s`);
    // A little longer, so agents' acks and files settle and the sampler sees the end state.
    await sleep(Math.max(3000, o.sampleIntervalMs * 4));
    sampling = false;
    await sampler;

    // --- final checks
    const jobs = (
      await db.query<DbJob>(`select id, name, state, reason, gpus, requeue, attempts, exit_code, time_limit_seconds from jobs order by submitted_at, id`)
    ).rows;
    const transitions = (await db.query<DbTransition>(`select job_id, at, from_state, to_state, reason from job_transitions order by id`)).rows;
    const allocations = (
      await db.query<DbAllocation>(`select a.job_id, n.name as node, a.gpu_index, a.created_at, a.released_at from allocations a join nodes n on n.id = a.node_id order by a.id`)
    ).rows;
    const overlaps = (
      await db.query<DbOverlap>(
        `select n.name as node, a.gpu_index, a.job_id as a_job, b.job_id as b_job, a.created_at as a_from, a.released_at as a_to, b.created_at as b_from, b.released_at as b_to
           from allocations a
           join allocations b on b.node_id = a.node_id and b.gpu_index = a.gpu_index and b.id > a.id
           join nodes n on n.id = a.node_id
          where tstzrange(a.created_at, coalesce(a.released_at, 'infinity')) && tstzrange(b.created_at, coalesce(b.released_at, 'infinity'))`,
      )
    ).rows;
    const nodeRows = (await db.query<{ name: string; state: string; state_reason: string }>(`select name, state, state_reason from nodes order by name`)).rows;
    const specByName = new Map(specs.map((s) => [s.name, s]));
    const specsById = new Map<string, JobSpec>();
    for (const j of jobs) {
      knownIds.add(j.id);
      const s = specByName.get(j.name);
      if (s) specsById.set(j.id, s);
    }
    const agentsLeft: AgentLeftovers[] = nodeNames.map((node) => ({
      node,
      running: Object.fromEntries(readRunningFile(join(agentsDir, node, 'running.json'))),
      journalEvents: readJournal(join(agentsDir, node, 'journal.jsonl')),
    }));
    const leftover = scanJobProcesses(agentsDir, knownIds);
    const violations = [
      ...checker.violations(),
      ...finalChecks({ overlapToleranceMs: o.overlapToleranceMs, jobs, transitions, allocations, overlaps, specs: specsById, cancels, observedAttempts: checker.observedAttempts(), leftoverProcesses: leftover, agents: agentsLeft }),
    ];

    const count = <T>(xs: readonly T[], key: (x: T) => string) => {
      const m: Record<string, number> = {};
      for (const x of xs) m[key(x)] = (m[key(x)] ?? 0) + 1;
      return m;
    };
    const requeueReason = (r: string) =>
      /went down/.test(r) ? 'node down' : /lost/.test(r) ? 'reported lost' : /preempt/.test(r) ? 'preempted' : /GPU/.test(r) ? 'GPU failed' : r.slice(0, 40);
    const faultsByKind: Record<string, number> = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0]));
    for (const f of faults) faultsByKind[f.kind]!++;
    const crashes: Record<string, number> = {};
    for (const p of procs) if (p.crashes.length) crashes[p.name] = p.crashes.length;
    const nodesNotUp = nodeRows.filter((n) => n.state !== 'up').map((n) => `${n.name} ${n.state} (${n.state_reason})`);
    const downsWithoutFault = nodeDownsWithoutAgentFault(transitions, faults, t0, jobs);
    // Failed (and kept for a look): a violation, a harness error, a process that died by itself,
    // a node left down, or healthy jobs requeued for a fault of the control plane only.
    const failed = violations.length > 0 || harnessErrors.length > 0 || procs.some((p) => p.crashes.length > 0) || nodesNotUp.length > 0 || downsWithoutFault.length > 0;
    const keep = o.keep === 'always' || (o.keep === 'on-failure' && failed);
    report = {
      seed: o.seed,
      options: { ...o, log: undefined, serverUrl: undefined } as unknown as ChaosReport['options'],
      runDir,
      kept: keep,
      faults,
      faultsByKind,
      skippedFaults,
      crashes,
      jobsSubmitted: jobs.length,
      jobsByKind: count(specs, (s) => s.kind),
      finalStates: count(jobs, (j) => j.state),
      requeues: count(
        transitions.filter((t) => t.from_state === 'running' && t.to_state === 'pending'),
        (t) => requeueReason(t.reason),
      ),
      cancels: count([...cancels.values()], (c) => String(c.status)),
      nodesNotUp,
      nodeDownsWithoutAgentFault: downsWithoutFault,
      nodeDownEvents: schedulers.reduce((n, p) => n + countLines(p.spec.logPath, /node \S+ is down/), 0),
      allocationSkews: overlaps.filter((x) => overlapMs(x) <= o.overlapToleranceMs).map((x) => `${x.node}/${x.gpu_index} ${overlapMs(x)} ms`),
      quiesced,
      quiesceMs,
      samples: checker.samples,
      violations,
      harnessErrors,
      wallMs: Date.now() - started,
    };
    if (keep) {
      const jobDump = jobs.map((j) => ({ ...j, spec: specsById.get(j.id), cancel: cancels.get(j.id), transitions: transitions.filter((t) => t.job_id === j.id), allocations: allocations.filter((a) => a.job_id === j.id) }));
      writeFileSync(join(runDir, 'db-dump.json'), JSON.stringify({ nodes: nodeRows, jobs: jobDump }, null, 2));
      writeFileSync(join(runDir, 'report.json'), JSON.stringify(report, null, 2));
    }
    return report;
  } catch (e) {
    say(`run failed: ${(e as Error).stack ?? e}`);
    (e as Error).message += ` (logs kept in ${runDir})`;
    throw e;
  } finally {
    await cleanup();
    active.delete(cleanup);
    if (report && !report.kept) rmSync(runDir, { recursive: true, force: true });
  }
}

export function formatReport(r: ChaosReport): string {
  const kv = (m: Record<string, number>) =>
    Object.entries(m)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ') || 'none';
  const lines = [
    `chaos seed ${r.seed}: ${r.options.faultSeconds} s of faults, ${r.jobsSubmitted} jobs on ${r.options.h100Nodes + r.options.h800Nodes} nodes, wall ${(r.wallMs / 1000).toFixed(0)} s`,
    `  faults injected: ${r.faults.length} (${kv(r.faultsByKind)})${r.skippedFaults ? `; ${r.skippedFaults} skipped` : ''}`,
    `  processes that died by themselves: ${kv(r.crashes)}`,
    `  jobs by kind: ${kv(r.jobsByKind)}`,
    `  jobs by final state: ${kv(r.finalStates)}`,
    `  requeues (running -> pending): ${kv(r.requeues)}`,
    `  cancels by answer: ${kv(r.cancels)}`,
    `  nodes marked down: ${r.nodeDownEvents}; not up at the end: ${r.nodesNotUp.join('; ') || 'none'}`,
    `  node-down requeues/failures with no fault on that node's agent: ${r.nodeDownsWithoutAgentFault.length ? r.nodeDownsWithoutAgentFault.join('; ') : 'none'}`,
    `  time to quiesce: ${r.quiesced ? `${(r.quiesceMs / 1000).toFixed(1)} s` : `not quiet within ${r.options.quiesceTimeoutSeconds} s`}`,
    `  samples: ${r.samples}; allocation records overlapping by timestamp skew only (≤ ${r.options.overlapToleranceMs} ms, not counted): ${r.allocationSkews.length}`,
    `  violations: ${r.violations.length}`,
  ];
  const byInv = new Map<string, Violation[]>();
  for (const v of r.violations) byInv.set(v.invariant, [...(byInv.get(v.invariant) ?? []), v]);
  for (const [inv, vs] of byInv) {
    lines.push(`    ${inv}: ${vs.length}`);
    for (const v of vs.slice(0, 12)) lines.push(`      - ${v.at !== undefined ? `[+${(v.at / 1000).toFixed(1)}s] ` : ''}${v.detail}`);
    if (vs.length > 12) lines.push(`      … and ${vs.length - 12} more (report.json)`);
  }
  if (r.harnessErrors.length) lines.push(`  harness errors: ${r.harnessErrors.join('; ')}`);
  lines.push(r.kept ? `  run directory kept: ${r.runDir} (logs/, harness.log, plan.json, db-dump.json, report.json, agents/)` : '  run directory removed');
  return lines.join('\n');
}

// ---------------------------------------------------------------- helpers

function countLines(path: string, re: RegExp): number {
  try {
    return readFileSync(path, 'utf8')
      .split('\n')
      .filter((l) => re.test(l)).length;
  } catch {
    return 0;
  }
}

/** "node X went down" transitions that no kill or stop of X's agent explains (within its downtime plus 15 s). */
function nodeDownsWithoutAgentFault(transitions: readonly DbTransition[], faults: readonly FaultRecord[], t0: number, jobs: readonly DbJob[]): string[] {
  const names = new Map(jobs.map((j) => [j.id, j.name]));
  const byEvent = new Map<string, string[]>();
  for (const t of transitions) {
    const m = /node (\S+) went down/.exec(t.reason);
    if (!m || t.from_state !== 'running') continue;
    const node = m[1]!;
    const at = t.at.getTime() - t0;
    const explained = faults.some((f) => f.target === `agent-${node}` && f.at <= at + 1000 && at <= f.at + f.downMs + 15_000);
    if (explained) continue;
    const key = `${node} at +${(at / 1000).toFixed(1)}s`;
    byEvent.set(key, [...(byEvent.get(key) ?? []), `${names.get(t.job_id) ?? t.job_id}→${t.to_state}`]);
  }
  return [...byEvent].map(([k, js]) => `${k} (${js.join(', ')})`);
}

async function http(port: number, token: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(5000),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      /* not JSON */
    }
    return { status: res.status, body: parsed };
  } catch {
    return { status: 0, body: undefined };
  }
}

async function isLeader(port: number): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(1500) });
    return /^nuri_scheduler_leader(\{\})?\s+1(\.0)?\s*$/m.test(await res.text());
  } catch {
    return false;
  }
}

function withDatabase(serverUrl: string, name: string): string {
  const u = new URL(serverUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((ok, fail) => {
          const s = createServer();
          s.once('error', fail);
          s.listen(0, '127.0.0.1', () => ok(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

function readRunningFile(path: string): Map<string, RunningFileEntry> {
  const out = new Map<string, RunningFileEntry>();
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return out;
  }
  for (const [k, v] of Object.entries(raw ?? {})) {
    if (typeof v === 'number') out.set(k, { pgid: v });
    else if (v && typeof v === 'object' && typeof (v as RunningFileEntry).pgid === 'number') {
      const a = (v as RunningFileEntry).attempt;
      out.set(k, { pgid: (v as RunningFileEntry).pgid, ...(typeof a === 'number' ? { attempt: a } : {}) });
    }
  }
  return out;
}

function readJournal(path: string): AgentLeftovers['journalEvents'] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  const out: AgentLeftovers['journalEvents'] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const e = JSON.parse(line).event;
      out.push({ kind: String(e.kind), jobId: String(e.jobId), ...(typeof e.attempt === 'number' ? { attempt: e.attempt } : {}) });
    } catch {
      /* torn line */
    }
  }
  return out;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/**
 * What earlier runs left behind when their harness died without cleaning up (kill -9 of the
 * test worker): their processes (marked NURI_CHAOS_OWNER), job processes under their run
 * directories, their databases and private builds. Only runs whose owner process is gone.
 */
async function reapStale(serverUrl: string, say: (m: string) => void): Promise<void> {
  const deadOwner = (pid: number) => pid !== process.pid && !alive(pid);
  let killed = 0;
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    let env: string;
    try {
      env = readFileSync(`/proc/${p}/environ`, 'utf8');
    } catch {
      continue;
    }
    const m = /(?:^|\0)NURI_CHAOS_OWNER=(\d+)(?:\0|$)/.exec(env);
    if (m && deadOwner(Number(m[1]))) {
      try {
        process.kill(Number(p), 'SIGCONT');
        process.kill(Number(p), 'SIGKILL');
        killed++;
      } catch {
        /* gone */
      }
    }
  }
  for (const d of readdirSync(tmpdir())) {
    if (!d.startsWith('nuri-chaos-')) continue;
    const dir = join(tmpdir(), d);
    let owner: number;
    try {
      owner = Number(readFileSync(join(dir, 'owner'), 'utf8'));
    } catch {
      continue;
    }
    if (!deadOwner(owner)) continue;
    const left = scanJobProcesses(join(dir, 'agents'), new Set());
    killed += killJobProcesses(left);
    // The directory itself may hold the logs of a failed run: it stays, without its owner mark.
    rmSync(join(dir, 'owner'), { force: true });
  }
  const builds = join(repoRoot(), 'dist', '.chaos');
  if (existsSync(builds))
    for (const d of readdirSync(builds)) {
      const owner = Number(d.split('-')[1]);
      if (Number.isInteger(owner) && deadOwner(owner)) rmSync(join(builds, d), { recursive: true, force: true });
    }
  const c = new Client({ connectionString: serverUrl, application_name: HARNESS_APP });
  await c.connect();
  try {
    const dbs = (await c.query<{ datname: string }>(`select datname from pg_database where datname like 'nuri\\_chaos\\_%'`)).rows;
    for (const { datname } of dbs) {
      const owner = Number(datname.split('_')[2]);
      if (Number.isInteger(owner) && deadOwner(owner) && /^[a-z0-9_]+$/.test(datname)) {
        await c.query(`drop database if exists ${datname} with (force)`);
        say(`dropped stale database ${datname}`);
      }
    }
  } finally {
    await c.end();
  }
  if (killed) say(`killed ${killed} stale process(es) of earlier runs`);
}
