import { describe, expect, it } from 'vitest';
import { defaultAddress, loadConfig } from './config';

const env = { NURI_GATEWAY_URL: 'ws://h/agent', NURI_NODE_TOKEN: 't' };
const iface = (address: string, internal: boolean, family: 'IPv4' | 'IPv6' = 'IPv4') => ({ address, internal, family, netmask: '', mac: '', cidr: null }) as never;

describe('the agent address (MASTER_ADDR of jobs whose rank 0 runs here)', () => {
  it('defaults to the first non-internal IPv4 address, else the host name', () => {
    expect(defaultAddress({ lo: [iface('127.0.0.1', true)], eth0: [iface('fe80::1', false, 'IPv6'), iface('10.1.2.3', false)] }, 'gpu-01')).toBe('10.1.2.3');
    expect(defaultAddress({ lo: [iface('127.0.0.1', true)] }, 'gpu-01')).toBe('gpu-01');
    expect(loadConfig([], env).address).toBe(defaultAddress());
  });
  it('takes --address or NURI_ADDRESS (the flag wins) and refuses what is no address', () => {
    expect(loadConfig(['--address', '10.0.0.7'], { ...env, NURI_ADDRESS: 'gpu-07.ib' }).address).toBe('10.0.0.7');
    expect(loadConfig([], { ...env, NURI_ADDRESS: 'gpu-07.ib' }).address).toBe('gpu-07.ib');
    expect(() => loadConfig(['--address', 'a b'], env)).toThrow(/address \(--address \/ NURI_ADDRESS\): an IP address or host name/);
  });
});
