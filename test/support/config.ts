import { parseServerConfig, ServerConfig } from '@nuri/config';

/** What every test center shares: loopback, any free port, a test database, quiet logs. */
function testCenterConfig(databaseUrl: string, vars: Record<string, string>): ServerConfig {
  // No reconnect allowance after start unless a test asks for one: tests see node timeouts at once.
  return parseServerConfig({ PORT: '0', HOST: '127.0.0.1', DATABASE_URL: databaseUrl, NURI_LOG_LEVEL: 'error', NURI_RECONNECT_ALLOWANCE_SECONDS: '0', ...vars });
}

/**
 * A small demo center on a test database for end-to-end tests: 4 simulated nodes.
 * `overrides` are environment variables, as a user sets them.
 */
export function demoCenterConfig(databaseUrl: string, agentWorkDir: string, overrides: Record<string, string> = {}): ServerConfig {
  return testCenterConfig(databaseUrl, { NURI_DEMO: '1', NURI_DEMO_NODES: '4', NURI_AGENT_WORK_DIR: agentWorkDir, ...overrides });
}

/**
 * A center with no demo and an operator bootstrap token; tests add their own tenants, nodes and
 * agents. `overrides` as above.
 */
export function bareCenterConfig(databaseUrl: string, operatorToken: string, overrides: Record<string, string> = {}): ServerConfig {
  return testCenterConfig(databaseUrl, { NURI_DEMO: '0', NURI_BOOTSTRAP_TOKEN: operatorToken, ...overrides });
}
