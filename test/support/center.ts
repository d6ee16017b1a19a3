import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, type AgentOptions } from '../../apps/agent/src/agent';
import { type RunningServer, startServer } from '../../apps/server/src/bootstrap';
import { createTestDatabase, type TestDatabase } from '../../libs/db/src/testing';
import { bareCenterConfig } from './config';
import { apiClient } from './http';

export interface CenterSpec {
  /** Names the scratch directory and the operator's bootstrap token. */
  name: string;
  /** Server environment variables (NURI_SCHEDULER_TICK_MS…). */
  vars?: Record<string, string>;
  /** Tenants with an h100 quota and one researcher each. */
  tenants: { name: string; user: string; guaranteed: number; limit: number }[];
  /** h100 nodes, registered (and their agents started) in this order. */
  nodes: string[];
  /** Options every agent gets (address, graceSeconds…). */
  agent?: Partial<AgentOptions>;
}

/** A running center: the server, the researchers' tokens by user, the agents by node name. */
export interface TestCenter {
  db: TestDatabase;
  server: RunningServer;
  /** Scratch directory: each agent works in `<work>/<node>`. */
  work: string;
  operator: string;
  tokens: Record<string, string>;
  agents: Record<string, Agent>;
  api: ReturnType<typeof apiClient>;
  stop(): Promise<void>;
}

/**
 * A center as production runs one, for end-to-end tests: a real PostgreSQL test database, a
 * server with no demo, tenants and researchers created through the API, and a connected
 * in-process agent per node whose jobs are real child processes.
 */
export async function startCenter(spec: CenterSpec): Promise<TestCenter> {
  const operator = `nuri_operator-bootstrap-token-for-${spec.name}`;
  const db = await createTestDatabase();
  const work = mkdtempSync(join(tmpdir(), `nuri-${spec.name}-`));
  const server = await startServer(bareCenterConfig(db.url, operator, spec.vars));
  const api = apiClient(() => server.url);
  const op = async (path: string, body: unknown) => {
    const r = await api(operator, 'POST', path, body);
    if (r.status >= 300) throw new Error(`POST ${path}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  };
  const tokens: Record<string, string> = {};
  for (const t of spec.tenants) {
    await op('/v1/tenants', { name: t.name, displayName: t.name, quotas: [{ gpuType: 'h100', guaranteed: t.guaranteed, limit: t.limit }] });
    await op('/v1/users', { name: t.user, tenant: t.name, role: 'researcher' });
    tokens[t.user] = (await op('/v1/tokens', { user: t.user })).token;
  }
  const agents: Record<string, Agent> = {};
  for (const name of spec.nodes) {
    const node = await op('/v1/nodes', { name, gpuType: 'h100', rack: 'r1', leafSwitch: 'l1' });
    agents[name] = new Agent({
      gatewayUrl: `ws://127.0.0.1:${server.port}/agent`,
      nodeName: name,
      nodeToken: node.agentToken,
      workDir: join(work, name),
      simulated: { gpus: 8, model: 'h100' },
      ...spec.agent,
    });
  }
  const all = Object.values(agents);
  await Promise.all(all.map((a) => a.start()));
  await Promise.all(all.map((a) => a.waitFor(() => a.stats().connected, 20_000)));
  return {
    db,
    server,
    work,
    operator,
    tokens,
    agents,
    api,
    async stop() {
      await Promise.all(all.map((a) => a.stop()));
      await server.close();
      await db.drop();
      rmSync(work, { recursive: true, force: true });
    },
  };
}
