import { z } from 'zod';

const bool = z
  .enum(['1', '0', 'true', 'false', 'yes', 'no'])
  .transform((v) => v === '1' || v === 'true' || v === 'yes');
const Role = z.enum(['api', 'scheduler', 'gateway']);

/** Every environment variable the server reads. Parsed once at boot; a bad value stops the start. */
export const ServerConfigSchema = z
  .object({
    PORT: z.coerce.number().int().min(0).max(65535).default(8080),
    // Unset (or empty): 127.0.0.1 for the demo center (its tokens are printed on the console), 0.0.0.0 otherwise.
    HOST: z.string().optional(),
    DATABASE_URL: z.string().regex(/^postgres(ql)?:\/\//, 'a postgres:// URL').optional(),
    NURI_DATA_DIR: z.string().default('.nuri/data'),
    NURI_ROLES: z
      .string()
      .default('api,scheduler,gateway')
      .transform((s) => s.split(',').map((r) => r.trim()).filter(Boolean))
      .pipe(z.array(Role).min(1)),
    NURI_BOOTSTRAP_TOKEN: z.string().min(24, 'at least 24 characters').optional(),
    // Where api replicas reach this gateway process to relay job output (e.g. http://gw-1.internal:8080).
    // Unset: http://HOST:PORT, loopback when HOST is unset or a wildcard (api and gateway on one host).
    NURI_GATEWAY_INTERNAL_URL: z
      .string()
      .regex(/^https?:\/\/[^/\s]+\/?$/, 'an http:// or https:// base URL without a path, e.g. http://gw-1.internal:8080')
      .transform((u) => u.replace(/\/$/, ''))
      .optional(),
    // Longest lifetime of a token made through the API; unset or 0: no maximum.
    NURI_TOKEN_MAX_LIFETIME_SECONDS: z.coerce.number().int().min(0).max(3650 * 24 * 3600).default(0),
    // When set, GET /metrics on every process wants `Authorization: Bearer <it>`.
    // How long an API replica reuses a token's successful check (ms); a revoked token or a disabled
    // user is refused at most this long after, by replicas other than the one that did it. 0: off.
    NURI_AUTH_CACHE_MS: z.coerce.number().int().min(0).max(10_000).default(2_000),
    NURI_METRICS_TOKEN: z.string().min(24, 'at least 24 characters').regex(/^\S+$/, 'no whitespace').optional(),
    NURI_DEMO: bool.optional(),
    NURI_DEMO_NODES: z.coerce.number().int().min(1).max(512).default(16),
    NURI_AGENT_WORK_DIR: z.string().default('.nuri/agents'),
    NURI_SCHEDULER_TICK_MS: z.coerce.number().int().min(50).max(600_000).default(5_000),
    NURI_PREEMPT_GRACE_SECONDS: z.coerce.number().int().min(0).max(3600).default(10),
    NURI_TIMEOUT_GRACE_SECONDS: z.coerce.number().int().min(0).max(3600).default(10),
    NURI_MIN_RUNTIME_BEFORE_PREEMPT_SECONDS: z.coerce.number().int().min(0).default(300),
    NURI_RESERVATION_DEPTH: z.coerce.number().int().min(0).max(1000).default(10),
    // The most waits a pass writes for jobs that have none yet (the rest, further back, in the next passes).
    // About 50 µs each under load: 10,000 keep a catch-up pass within its 2 s (at 20,000 they took 2-3 s).
    NURI_NEW_WAITS_PER_PASS: z.coerce.number().int().min(1).default(10_000),
    // The most waits a pass rewrites only because a position or an estimate drifted past its slack,
    // the most wrong first (the rest: later passes). A burst of submissions ranked mid-queue
    // moves every position behind it: 1,000 newcomers a pass rewrote 13,000-27,000 rows a pass.
    NURI_DRIFTED_WAITS_PER_PASS: z.coerce.number().int().min(1).default(5_000),
    // The most starts a pass commits, front of the queue first (the rest: the next pass). About
    // 0.7 ms each: a leader restarted into an emptied fleet committed 2,973 in one 2 s statement.
    NURI_MAX_STARTS_PER_PASS: z.coerce.number().int().min(1).default(1_000),
    // As the simulator's DEFAULT_POLICY_CONFIG, so the figures it reports are for this default. 0: off.
    NURI_STARVATION_SECONDS: z.coerce.number().int().min(0).default(4 * 3600),
    NURI_FAIR_SHARE_HALF_LIFE_SECONDS: z.coerce.number().positive().default(7 * 24 * 3600),
    NURI_NODE_DOWN_AFTER_SECONDS: z.coerce.number().int().min(1).default(30),
    // After a scheduler takes over or a gateway starts, agents backing off get this long to come back (the agent's backoff cap).
    NURI_RECONNECT_ALLOWANCE_SECONDS: z.coerce.number().int().min(0).max(3600).default(30),
    NURI_AGENT_HEARTBEAT_SECONDS: z.coerce.number().int().min(1).default(5),
    NURI_SAMPLE_INTERVAL_MS: z.coerce.number().int().min(100).default(5_000),
    NURI_LOG_LEVEL: z.enum(['error', 'warn', 'log', 'debug']).default('log'),
    // json: one JSON object a line (for log collectors); text: Nest's lines, coloured only on a terminal.
    NURI_LOG_FORMAT: z.enum(['text', 'json']).default('text'),
    NURI_DCGM_COMPAT: bool.default(false),
    NURI_IDLE_UTILIZATION_RATIO: z.coerce.number().min(0).max(1).default(0.05),
    NURI_IDLE_SECONDS: z.coerce.number().int().min(1).default(30 * 60),
    // Ports a job's MASTER_PORT is chosen from (`first-last`), lowest free on its rank 0 node.
    NURI_MASTER_PORTS: z
      .string()
      .default('29500-30499')
      .transform((v, ctx) => {
        const m = /^\s*(\d{1,5})\s*-\s*(\d{1,5})\s*$/.exec(v);
        const first = m ? Number(m[1]) : NaN;
        const last = m ? Number(m[2]) : NaN;
        if (!m || first < 1 || last > 65535 || first > last) {
          ctx.addIssue({ code: 'custom', message: 'a port range first-last within 1-65535, first <= last (e.g. 29500-30499)' });
          return z.NEVER;
        }
        return { first, last };
      }),
  })
  .refine((c) => !(c.NURI_DEMO ?? c.DATABASE_URL === undefined) || ['api', 'gateway'].every((r) => c.NURI_ROLES.includes(r as 'api')), {
    message: 'the demo center needs the api and gateway roles in this process (set NURI_DEMO=0 to run fewer roles)',
    path: ['NURI_ROLES'],
  })
  .transform((c) => ({
    port: c.PORT,
    host: c.HOST || ((c.NURI_DEMO ?? c.DATABASE_URL === undefined) ? '127.0.0.1' : '0.0.0.0'),
    databaseUrl: c.DATABASE_URL,
    dataDir: c.NURI_DATA_DIR,
    roles: new Set(c.NURI_ROLES),
    bootstrapToken: c.NURI_BOOTSTRAP_TOKEN,
    gatewayInternalUrl: c.NURI_GATEWAY_INTERNAL_URL,
    tokenMaxLifetimeSeconds: c.NURI_TOKEN_MAX_LIFETIME_SECONDS || undefined,
    metricsToken: c.NURI_METRICS_TOKEN,
    authCacheMs: c.NURI_AUTH_CACHE_MS,
    // The zero-configuration start is a demo center; with a real database it is opt-in.
    demo: c.NURI_DEMO ?? c.DATABASE_URL === undefined,
    demoNodes: c.NURI_DEMO_NODES,
    agentWorkDir: c.NURI_AGENT_WORK_DIR,
    schedulerTickMs: c.NURI_SCHEDULER_TICK_MS,
    preemptGraceSeconds: c.NURI_PREEMPT_GRACE_SECONDS,
    timeoutGraceSeconds: c.NURI_TIMEOUT_GRACE_SECONDS,
    minRuntimeBeforePreemptSeconds: c.NURI_MIN_RUNTIME_BEFORE_PREEMPT_SECONDS,
    reservationDepth: c.NURI_RESERVATION_DEPTH,
    newWaitsPerPass: c.NURI_NEW_WAITS_PER_PASS,
    driftedWaitsPerPass: c.NURI_DRIFTED_WAITS_PER_PASS,
    maxStartsPerPass: c.NURI_MAX_STARTS_PER_PASS,
    starvationSeconds: c.NURI_STARVATION_SECONDS,
    fairShareHalfLifeSeconds: c.NURI_FAIR_SHARE_HALF_LIFE_SECONDS,
    nodeDownAfterSeconds: c.NURI_NODE_DOWN_AFTER_SECONDS,
    reconnectAllowanceSeconds: c.NURI_RECONNECT_ALLOWANCE_SECONDS,
    agentHeartbeatSeconds: c.NURI_AGENT_HEARTBEAT_SECONDS,
    sampleIntervalMs: c.NURI_SAMPLE_INTERVAL_MS,
    logLevel: c.NURI_LOG_LEVEL,
    logFormat: c.NURI_LOG_FORMAT,
    // Also export dcgm-exporter metric names, so existing DCGM dashboards work unchanged.
    dcgmCompat: c.NURI_DCGM_COMPAT,
    // An allocated GPU under this utilization for this long counts as idle (metrics, alerts).
    idle: { thresholdRatio: c.NURI_IDLE_UTILIZATION_RATIO, forSeconds: c.NURI_IDLE_SECONDS },
    masterPorts: c.NURI_MASTER_PORTS,
  }));

export type ServerConfig = z.infer<typeof ServerConfigSchema>;

export class ConfigError extends Error {}

export function parseServerConfig(env: Record<string, string | undefined>): ServerConfig {
  const r = ServerConfigSchema.safeParse(env);
  if (!r.success) {
    const lines = r.error.issues.map((i) => `  ${i.path.join('.') || '(env)'}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  return r.data;
}
