import type { ServerConfig } from '@nuri/config';
import { IdentityRepository, NodesRepository, TenantsRepository } from '@nuri/db';
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

/**
 * Seeds the demo center on first start (tenants, users, nodes) and, on every start,
 * issues fresh tokens to print and starts one in-process agent per node. The agents
 * are the production agent code with a simulated collector, talking real WebSocket.
 */
export async function startDemo(
  config: ServerConfig,
  deps: { tenants: TenantsRepository; identity: IdentityRepository; nodes: NodesRepository; auth: AuthService },
  gatewayUrl: string,
  operatorToken: string | undefined,
): Promise<DemoHandle> {
  const { tenants, identity, nodes, auth } = deps;
  if ((await tenants.count()) === 0) {
    for (const t of DEMO_TENANTS) {
      const id = await tenants.create({ name: t.name, displayName: t.displayName, weight: t.weight, quotas: t.quotas });
      await identity.createUser({ name: `${t.name}-researcher`, tenantId: id, role: 'researcher' });
      await identity.createUser({ name: `${t.name}-admin`, tenantId: id, role: 'tenant-admin' });
    }
  }
  if (!(await identity.findUser('operator'))) await identity.createUser({ name: 'operator', tenantId: null, role: 'operator' });
  const researcher = (await identity.findUser('naver-researcher'))!;
  const operator = (await identity.findUser('operator'))!;
  const researcherToken = (await auth.issueToken(researcher.id, 'demo start', null)).token;
  const opToken = operatorToken ?? (await auth.issueToken(operator.id, 'demo start', null)).token;

  const agents: Agent[] = [];
  for (const n of demoNodes(config.demoNodes)) {
    let id = await nodes.idByName(n.name);
    const token = newAgentToken();
    if (!id) id = await nodes.create({ ...n, gpus: 8, tokenHash: hashToken(token) });
    // The plaintext of an old token is gone (stored hashed): the in-process agent gets a new one.
    else await nodes.setAgentTokenHash(id, hashToken(token));
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
