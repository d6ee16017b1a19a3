import type { ServerConfig } from '@nuri/config';
import { IdentityRepository, NodesRepository, TenantsRepository } from '@nuri/db';
import { NodesService } from '../api/nodes/nodes.service';
import { TenantsService } from '../api/tenants/tenants.service';
import { UsersService } from '../api/users/users.service';
import { PricesService } from '../api/prices/prices.service';
import { chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Agent, blockedAncestor } from '@nuri/agent';
import { AuthService } from '../auth/auth.service';
import { hashToken, newAgentToken } from '../auth/tokens';
import { DEMO_TENANTS, demoNodes } from './demo-center';

const DEMO_UID_BASE = 200_000;
const DEMO_UIDS_PER_NODE = 1000;
const asRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;

/**
 * Where the demo agents keep their jobs' own directories when the work dir is one other
 * users cannot pass through (a checkout under /root): a fresh root-owned directory in the
 * system's temporary directory. Undefined: under the work dir, as usual.
 */
function demoJobsRoot(agentWorkDir: string): string | undefined {
  if (!asRoot() || !blockedAncestor(resolve(agentWorkDir))) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'nuri-demo-jobs-'));
  chmodSync(dir, 0o711);
  return dir;
}

export interface DemoHandle {
  researcherToken: string;
  researcher: string;
  operatorToken: string;
  agents: Agent[];
  stop(): Promise<void>;
}

export interface DemoDeps {
  tenants: TenantsRepository;
  identity: IdentityRepository;
  nodes: NodesRepository;
  auth: AuthService;
  tenantsService: TenantsService;
  usersService: UsersService;
  nodesService: NodesService;
  /** Seeds the demo's GPU prices (issue 15); absent: none seeded. */
  pricesService?: PricesService;
}

/**
 * The demo's prices in USD per GPU-hour (the README states them): an H800 costs about 2 USD an
 * hour to run; an H100, with twice the NVLink bandwidth, 2.50. Effective from 2020 so that
 * usage recorded before a first price was set is priced too.
 */
export const DEMO_PRICES = [
  { gpuType: 'h800' as const, effectiveFrom: '2020-01-01', usdPerGpuHour: 2.0 },
  { gpuType: 'h100' as const, effectiveFrom: '2020-01-01', usdPerGpuHour: 2.5 },
];

/**
 * Seeds the demo center on first start (tenants, users, nodes) through the same services
 * the API uses and, on every start, issues fresh tokens to print and starts one in-process
 * agent per node. The agents are the production agent code with a simulated collector,
 * talking real WebSocket.
 */
export async function startDemo(
  config: ServerConfig,
  deps: DemoDeps,
  gatewayUrl: string,
  operatorToken: string | undefined,
): Promise<DemoHandle> {
  const { tenants, identity, nodes, auth } = deps;
  if ((await tenants.count()) === 0) {
    for (const t of DEMO_TENANTS) {
      await deps.tenantsService.create(t);
      await deps.usersService.create({ name: `${t.name}-researcher`, tenant: t.name, role: 'researcher' });
      await deps.usersService.create({ name: `${t.name}-admin`, tenant: t.name, role: 'tenant-admin' });
    }
  }
  if (!(await identity.findUser('operator'))) await deps.usersService.create({ name: 'operator', tenant: null, role: 'operator' });
  await deps.pricesService?.seedIfNone({ prices: DEMO_PRICES });
  const researcher = (await identity.findUser('naver-researcher'))!;
  const operator = (await identity.findUser('operator'))!;
  const researcherToken = (await auth.issueToken(researcher.id, 'demo start', null)).token;
  const opToken = operatorToken ?? (await auth.issueToken(operator.id, 'demo start', null)).token;

  const agents: Agent[] = [];
  const jobsRoot = demoJobsRoot(config.agentWorkDir);
  for (const [i, n] of demoNodes(config.demoNodes).entries()) {
    const id = await nodes.idByName(n.name);
    let constructed = false;
    let token: string;
    if (!id) token = (await deps.nodesService.register({ ...n, gpus: 8 })).agentToken;
    else {
      // The plaintext of an old token is gone (stored hashed): the in-process agent gets a new one.
      token = newAgentToken();
      await nodes.setAgentTokenHash(id, hashToken(token));
    }
    agents.push(
      new Agent({
        gatewayUrl,
        nodeName: n.name,
        nodeToken: token,
        // Every demo node is this machine: a multi-node job's ranks meet on loopback.
        address: '127.0.0.1',
        simulated: { gpus: 8, model: n.gpuType },
        workDir: join(config.agentWorkDir, n.name),
        // As root, each job runs as its own uid (a range per node), so it cannot read this
        // process's environment (/proc/<ppid>/environ: NURI_BOOTSTRAP_TOKEN…), signal other
        // jobs or write their files.
        ...(asRoot() ? { isolation: { uidRange: { first: DEMO_UID_BASE + i * DEMO_UIDS_PER_NODE, last: DEMO_UID_BASE + (i + 1) * DEMO_UIDS_PER_NODE - 1 } } } : {}),
        ...(jobsRoot ? { jobsDir: join(jobsRoot, n.name) } : {}),
        sampleIntervalMs: config.sampleIntervalMs,
        graceSeconds: config.timeoutGraceSeconds,
        log: (level, msg) => {
          // What an agent finds about the node's isolation at construction is the same for
          // every demo agent (one machine): the first one says it.
          if (i > 0 && !constructed) return;
          if (level === 'error' || level === 'warn') console.warn(`[agent ${n.name}] ${msg}`);
        },
      }),
    );
    constructed = true;
  }
  await Promise.all(agents.map((a) => a.start()));
  // Ready means the fleet is up: wait (bounded) for every agent's hello before returning.
  await Promise.all(agents.map((a) => a.waitFor(() => a.stats().connected, 15_000).catch(() => undefined)));
  return {
    researcherToken,
    researcher: researcher.name,
    operatorToken: opToken,
    agents,
    async stop() {
      await Promise.all(agents.map((a) => a.stop()));
    },
  };
}
