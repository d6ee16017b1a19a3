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
  it('caps the starts a pass commits at 1,000 unless told otherwise, and at least 1', () => {
    expect(parseServerConfig({}).maxStartsPerPass).toBe(1000);
    expect(parseServerConfig({ NURI_MAX_STARTS_PER_PASS: '50' }).maxStartsPerPass).toBe(50);
    expect(() => parseServerConfig({ NURI_MAX_STARTS_PER_PASS: '0' })).toThrow(/NURI_MAX_STARTS_PER_PASS: .*1/);
  });
  it('rewrites at most 5,000 drifted waits a pass unless told otherwise, and at least 1', () => {
    expect(parseServerConfig({}).driftedWaitsPerPass).toBe(5000);
    expect(parseServerConfig({ NURI_DRIFTED_WAITS_PER_PASS: '200' }).driftedWaitsPerPass).toBe(200);
    expect(() => parseServerConfig({ NURI_DRIFTED_WAITS_PER_PASS: '0' })).toThrow(/NURI_DRIFTED_WAITS_PER_PASS: .*1/);
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
  it('listens on loopback for the demo unless HOST says otherwise, and on every address in production', () => {
    expect(parseServerConfig({}).host).toBe('127.0.0.1');
    expect(parseServerConfig({ HOST: '' }).host).toBe('127.0.0.1');
    expect(parseServerConfig({ HOST: '0.0.0.0' }).host).toBe('0.0.0.0');
    expect(parseServerConfig({ DATABASE_URL: 'postgres://x@h/db' }).host).toBe('0.0.0.0');
    expect(parseServerConfig({ DATABASE_URL: 'postgres://x@h/db', NURI_DEMO: '1' }).host).toBe('127.0.0.1');
    expect(parseServerConfig({ DATABASE_URL: 'postgres://x@h/db', HOST: '10.0.0.5' }).host).toBe('10.0.0.5');
  });
  it('takes a metrics token of at least 24 characters and a token lifetime cap (0: none)', () => {
    expect(parseServerConfig({}).metricsToken).toBeUndefined();
    expect(parseServerConfig({ NURI_METRICS_TOKEN: 'm'.repeat(24) }).metricsToken).toBe('m'.repeat(24));
    expect(() => parseServerConfig({ NURI_METRICS_TOKEN: 'short' })).toThrow(/NURI_METRICS_TOKEN: at least 24/);
    expect(() => parseServerConfig({ NURI_METRICS_TOKEN: `${'m'.repeat(24)} x` })).toThrow(/NURI_METRICS_TOKEN: no whitespace/);
    expect(parseServerConfig({}).tokenMaxLifetimeSeconds).toBeUndefined();
    expect(parseServerConfig({ NURI_TOKEN_MAX_LIFETIME_SECONDS: '0' }).tokenMaxLifetimeSeconds).toBeUndefined();
    expect(parseServerConfig({ NURI_TOKEN_MAX_LIFETIME_SECONDS: '86400' }).tokenMaxLifetimeSeconds).toBe(86400);
    expect(() => parseServerConfig({ NURI_TOKEN_MAX_LIFETIME_SECONDS: '-1' })).toThrow(/NURI_TOKEN_MAX_LIFETIME_SECONDS/);
  });
  it('takes the MASTER_PORT range as first-last, 29500-30499 by default, and refuses a bad one', () => {
    expect(parseServerConfig({}).masterPorts).toEqual({ first: 29500, last: 30499 });
    expect(parseServerConfig({ NURI_MASTER_PORTS: '40000-40000' }).masterPorts).toEqual({ first: 40000, last: 40000 });
    for (const bad of ['29500', '30499-29500', '0-10', '1-65536', 'a-b'])
      expect(() => parseServerConfig({ NURI_MASTER_PORTS: bad })).toThrow(/NURI_MASTER_PORTS: a port range/);
  });
});
