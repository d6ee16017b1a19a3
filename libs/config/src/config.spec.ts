import { describe, expect, it } from 'vitest';
import { parseServerConfig } from './config';

describe('server configuration', () => {
  it('defaults to an embedded demo center on port 8080 with every role', () => {
    const c = parseServerConfig({});
    expect(c).toMatchObject({ port: 8080, databaseUrl: undefined, demo: true });
    expect([...c.roles].sort()).toEqual(['api', 'gateway', 'scheduler']);
  });
  it('takes the anti-starvation threshold the simulator measured (4 h), 0 to turn it off', () => {
    expect(parseServerConfig({}).starvationSeconds).toBe(4 * 3600);
    expect(parseServerConfig({ NURI_STARVATION_SECONDS: '0' }).starvationSeconds).toBe(0);
    expect(() => parseServerConfig({ NURI_STARVATION_SECONDS: '-1' })).toThrow(/NURI_STARVATION_SECONDS: .*0/);
  });
  it('makes the demo opt-in with a real database', () => {
    expect(parseServerConfig({ DATABASE_URL: 'postgres://x@h/db' }).demo).toBe(false);
    expect(parseServerConfig({ DATABASE_URL: 'postgres://x@h/db', NURI_DEMO: '1' }).demo).toBe(true);
  });
  it('names the variable and the rule when a value is bad', () => {
    expect(() => parseServerConfig({ PORT: 'eighty' })).toThrow(/PORT: .*number/i);
    expect(() => parseServerConfig({ NURI_ROLES: 'api,cook' })).toThrow(/NURI_ROLES/);
    expect(() => parseServerConfig({ NURI_BOOTSTRAP_TOKEN: 'short' })).toThrow(/NURI_BOOTSTRAP_TOKEN: at least 24/);
    expect(() => parseServerConfig({ NURI_ROLES: 'scheduler' })).toThrow(/NURI_ROLES: the demo center needs the api and gateway roles/);
    expect(parseServerConfig({ NURI_ROLES: 'scheduler', NURI_DEMO: '0' }).roles).toEqual(new Set(['scheduler']));
  });
});
