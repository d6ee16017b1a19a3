import { readFileSync } from 'node:fs';
import { hostname, networkInterfaces } from 'node:os';
import { GPU_MODELS } from '@nuri/contracts/gpu';
import { z } from 'zod';
import { DEFAULT_PIDS_MAX, parseBytes, parseUidRange } from './isolation';

/**
 * Agent configuration: every key can come from a flag (`--gateway-url=...` or
 * `--gateway-url ...`) or from the environment (`NURI_GATEWAY_URL`); flags win.
 */
const num = z.coerce.number();

/** Where other nodes reach this one by default: the first non-internal IPv4 address, else the host name. */
export function defaultAddress(ifaces: ReturnType<typeof networkInterfaces> = networkInterfaces(), host = hostname()): string {
  for (const list of Object.values(ifaces)) for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  return host;
}

export const AgentConfig = z
  .object({
    once: z.boolean().default(false),
    gatewayUrl: z.string().regex(/^wss?:\/\//, 'must be a ws:// or wss:// URL').optional(),
    nodeName: z.string().min(1).max(253).regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'letters, digits, dot, dash, underscore').default(hostname()),
    /** The address other nodes reach this one at (a multi-node job's MASTER_ADDR when rank 0 runs here). */
    address: z
      .string()
      .min(1)
      .max(255)
      .regex(/^[A-Za-z0-9][A-Za-z0-9.:_-]*$/, 'an IP address or host name')
      .default(() => defaultAddress()),
    nodeToken: z.string().min(1).optional(),
    nodeTokenFile: z.string().min(1).optional(),
    collector: z.enum(['simulated', 'nvidia-smi']).default('nvidia-smi'),
    nvidiaSmi: z.string().min(1).default('nvidia-smi'),
    workDir: z.string().min(1).default('/var/lib/nuri-agent'),
    graceSeconds: num.int().min(0).max(3600).default(30),
    sampleIntervalSeconds: num.positive().max(3600).default(5),
    simGpus: num.int().min(1).max(64).default(8),
    simModel: z.enum(GPU_MODELS).default('h100'),
    xidFile: z.string().min(1).optional(),
    xidCommand: z.string().min(1).optional(),
    runAsUid: num.int().min(0).optional(),
    runAsGid: num.int().min(0).optional(),
    runAsUser: z.string().min(1).optional(),
    runAsHome: z.string().startsWith('/', 'an absolute path').optional(),
    /** Each job runs as its own uid and gid from this range when the agent is root (`200000-265535`). */
    uidRange: z
      .string()
      .transform((v, ctx) => {
        try {
          return parseUidRange(v);
        } catch (e) {
          ctx.addIssue({ code: 'custom', message: (e as Error).message });
          return z.NEVER;
        }
      })
      .optional(),
    /** The jobs' own directories (default `<workDir>/jobs`). */
    jobsDir: z.string().min(1).optional(),
    /** Job cgroups: auto (v2 with controllers, else v1, else v2 kill-only), v1, v2 or none. */
    cgroup: z.enum(['auto', 'v1', 'v2', 'none']).default('auto'),
    cgroupRoot: z.string().min(1).default('/sys/fs/cgroup'),
    /** Most tasks (processes + threads) per job; 0: no limit. */
    pidsMax: num.int().min(0).max(4_194_304).default(DEFAULT_PIDS_MAX),
    /** Memory limit per GPU a job holds (`80G`, `512Mi`, bytes); unset: none. */
    memoryPerGpu: z
      .string()
      .transform((v, ctx) => {
        try {
          return parseBytes(v);
        } catch (e) {
          ctx.addIssue({ code: 'custom', message: (e as Error).message });
          return z.NEVER;
        }
      })
      .optional(),
    /** Limit each job to its own /dev/nvidia<N> plus the control devices. */
    constrainDevices: z
      .enum(['true', 'false', '1', '0'], 'true or false')
      .transform((v) => v === 'true' || v === '1')
      .default(true),
    deviceDir: z.string().min(1).default('/dev'),
    maxBufferedSamples: num.int().min(1).max(1_000_000).default(600),
    // Reconnect backoff (exponential, full jitter): keep the cap within the server's NURI_RECONNECT_ALLOWANCE_SECONDS.
    backoffBaseSeconds: num.positive().max(60).default(0.5),
    backoffCapSeconds: num.positive().max(3600).default(30),
    logCapBytes: num.int().min(1024).default(64 * 1024 * 1024),
    /** Hours a job's output is kept after it ended (may be fractional); then the agent removes it. */
    outputRetentionHours: num.positive().max(100_000).default(168),
    /** json: one JSON object a line on stderr (for log collectors); text: a timestamped line. */
    logFormat: z.enum(['text', 'json']).default('text'),
  })
  .superRefine((c, ctx) => {
    if (c.once) return;
    if (!c.gatewayUrl) ctx.addIssue({ code: 'custom', path: ['gatewayUrl'], message: 'required' });
    if (!c.nodeToken && !c.nodeTokenFile) ctx.addIssue({ code: 'custom', path: ['nodeToken'], message: 'required (or nodeTokenFile)' });
    if ((c.runAsUid === undefined) !== (c.runAsGid === undefined)) ctx.addIssue({ code: 'custom', path: ['runAsGid'], message: 'runAsUid and runAsGid go together' });
    if (c.uidRange && c.runAsUid !== undefined) ctx.addIssue({ code: 'custom', path: ['uidRange'], message: 'uidRange (a uid per job) and runAsUid (one uid for all) exclude each other' });
  });
export type AgentConfig = z.infer<typeof AgentConfig>;

const kebab = (k: string) => k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const envName = (k: string) => `NURI_${kebab(k).replace(/-/g, '_').toUpperCase()}`;
const KEYS = Object.keys(AgentConfig.shape);

export class ConfigError extends Error {}

export function loadConfig(argv: string[], env: NodeJS.ProcessEnv): AgentConfig {
  const raw: Record<string, unknown> = {};
  const keys = KEYS;
  for (const k of keys) {
    const v = env[envName(k)];
    if (v !== undefined && v !== '') raw[k] = k === 'once' ? v === '1' || v === 'true' : v;
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new ConfigError(`unexpected argument ${JSON.stringify(a)}`);
    const [flag, inline] = a.slice(2).split(/=(.*)/s, 2);
    const key = keys.find((k) => kebab(k) === flag);
    if (!key) throw new ConfigError(`unknown flag --${flag}`);
    if (key === 'once') raw.once = inline === undefined ? true : inline !== 'false';
    else if (inline !== undefined) raw[key] = inline;
    else if (i + 1 < argv.length) raw[key] = argv[++i]!;
    else throw new ConfigError(`--${flag} needs a value`);
  }
  const r = AgentConfig.safeParse(raw);
  if (!r.success) {
    const lines = r.error.issues.map((iss) => {
      const k = String(iss.path[0] ?? '');
      return `  ${k} (--${kebab(k)} / ${envName(k)}): ${iss.message}`;
    });
    throw new ConfigError(`invalid agent configuration:\n${lines.join('\n')}`);
  }
  const c = r.data;
  if (!c.nodeToken && c.nodeTokenFile) {
    try {
      c.nodeToken = readFileSync(c.nodeTokenFile, 'utf8').trim();
    } catch (e) {
      throw new ConfigError(`invalid agent configuration:\n  nodeTokenFile (--node-token-file / NURI_NODE_TOKEN_FILE): ${(e as Error).message}`);
    }
  }
  return c;
}
