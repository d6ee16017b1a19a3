import type { ServerConfig } from '@nuri/config';
import { IdentityRepository, NodesRepository, TenantsRepository } from '@nuri/db';
import { NodesService } from '../api/nodes/nodes.service';
import { TenantsService } from '../api/tenants/tenants.service';
import { UsersService } from '../api/users/users.service';
import { join } from 'node:path';
import { Agent } from '../../../agent/src/agent';
import { AuthService } from '../auth/auth.service';
import { hashToken, newAgentToken } from '../auth/tokens';
import { DEMO_TENANTS, demoNodes } from './demo-center';

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
}

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
  const researcher = (await identity.findUser('naver-researcher'))!;
  const operator = (await identity.findUser('operator'))!;
  const researcherToken = (await auth.issueToken(researcher.id, 'demo start', null)).token;
  const opToken = operatorToken ?? (await auth.issueToken(operator.id, 'demo start', null)).token;

  const agents: Agent[] = [];
  for (const n of demoNodes(config.demoNodes)) {
    const id = await nodes.idByName(n.name);
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
        simulated: { gpus: 8, model: n.gpuType },
        workDir: join(config.agentWorkDir, n.name),
        sampleIntervalMs: config.sampleIntervalMs,
        graceSeconds: config.timeoutGraceSeconds,
        log: (level, msg) => {
          if (level === 'error' || level === 'warn') console.warn(`[agent ${n.name}] ${msg}`);
        },
      }),
    );
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
