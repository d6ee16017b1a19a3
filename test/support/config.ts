import { parseServerConfig, ServerConfig } from '@nuri/config';

/**
 * A small demo center on a test database for end-to-end tests: loopback, any free port,
 * 4 simulated nodes, quiet logs. `overrides` are environment variables, as a user sets them.
 */
export function demoCenterConfig(databaseUrl: string, agentWorkDir: string, overrides: Record<string, string> = {}): ServerConfig {
  return parseServerConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    DATABASE_URL: databaseUrl,
    NURI_DEMO: '1',
    NURI_DEMO_NODES: '4',
    NURI_AGENT_WORK_DIR: agentWorkDir,
    NURI_LOG_LEVEL: 'error',
    ...overrides,
  });
}
