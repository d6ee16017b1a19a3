/**
 * deploy/systemd: the units start what the build writes, with settings the server and the
 * agent accept, and are hardened as far as each role allows (the server roles: read-only
 * system, no devices or privileges, a dedicated user; the agent keeps cgroups, GPUs and
 * switching to the jobs' uids). Where systemd-analyze exists, it verifies them and scores them.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { agentConfig, agentNames, read, ROOT, serverConfig, serverEnvNames, sourceOfBuilt } from './support';

/** `Key=value` lines of a unit, by key (a key may repeat). */
function unit(name: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of read(`deploy/systemd/${name}`).split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (m) out.set(m[1]!, [...(out.get(m[1]!) ?? []), m[2]!]);
  }
  return out;
}
const one = (u: Map<string, string[]>, k: string) => u.get(k)?.at(-1);

/** Shell-like split of ExecStart (double quotes group words). */
const argv = (s: string) => [...s.matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2]!);

const SERVER_HARDENING: Record<string, string> = {
  NoNewPrivileges: 'yes',
  ProtectSystem: 'strict',
  ProtectHome: 'yes',
  PrivateTmp: 'yes',
  PrivateDevices: 'yes',
  ProtectControlGroups: 'yes',
  ProtectKernelTunables: 'yes',
  ProtectKernelModules: 'yes',
  RestrictSUIDSGID: 'yes',
  CapabilityBoundingSet: '',
};

/** The heap cap every server launch carries (the Dockerfile's NODE_OPTIONS, npm start). */
const HEAP_CAP = '--max-old-space-size=768';

const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' }).status === 0;

describe('deploy/systemd', () => {
  for (const role of ['api', 'gateway', 'scheduler']) {
    it(`nuri-${role}.service: the built server as the nuri user, its role and variables the server accepts, hardened`, () => {
      const u = unit(`nuri-${role}.service`);
      expect(one(u, 'User')).toBe('nuri');
      expect(read('deploy/systemd/nuri.sysusers')).toMatch(/^u nuri /m);
      const [node, ...rest] = argv(one(u, 'ExecStart')!);
      expect(node).toBe('/usr/bin/node');
      // Node's own flags first: the heap cap the image and `npm start` use too, which node accepts.
      const flags = rest.filter((a) => a.startsWith('--'));
      const main = rest[flags.length];
      expect(flags).toEqual([HEAP_CAP]);
      expect(spawnSync(process.execPath, [...flags, '-e', '0']).status).toBe(0);
      expect(existsSync(join(ROOT, sourceOfBuilt(main!)))).toBe(true);
      const env = Object.fromEntries((u.get('Environment') ?? []).map((e) => e.split('=', 2) as [string, string]));
      for (const k of Object.keys(env)) expect(serverEnvNames().has(k), `${k} is not a server setting`).toBe(true);
      expect([...serverConfig({ ...env, DATABASE_URL: 'postgres://nuri@db/nuri' }).roles]).toEqual([role]);
      for (const [k, v] of Object.entries(SERVER_HARDENING)) expect(one(u, k), `${k}=${v}`).toBe(v);
      // Node's JIT needs writable-executable memory.
      expect(u.has('MemoryDenyWriteExecute')).toBe(false);
    });
  }

  it('nuri-agent.service: root with its cgroup subtree, flags the agent accepts, hardened only where jobs are unaffected', () => {
    const u = unit('nuri-agent.service');
    expect(one(u, 'User')).toBe('root');
    expect(one(u, 'Delegate')).toBe('yes');
    expect(one(u, 'KillMode')).toBe('process');
    const [node, main, ...flags] = argv(one(u, 'ExecStart')!);
    expect(node).toBe('/usr/bin/node');
    expect(existsSync(join(ROOT, sourceOfBuilt(main!)))).toBe(true);
    for (const f of flags.filter((a) => a.startsWith('--'))) expect(agentNames().flags.has(f), `${f} is not an agent flag`).toBe(true);
    const c = agentConfig(flags, { NURI_GATEWAY_URL: 'ws://gw:8080/agent', NURI_NODE_TOKEN: 'x' });
    expect(c).toMatchObject({ collector: 'nvidia-smi', workDir: '/var/lib/nuri-agent', xidCommand: 'journalctl -k -f -o cat' });
    expect(one(u, 'NoNewPrivileges')).toBe('yes');
    expect(one(u, 'ProtectSystem')).toBe('full');
    // What would break the agent or its jobs.
    for (const k of ['ProtectControlGroups', 'PrivateDevices', 'PrivateTmp', 'ProtectHome', 'PrivateUsers']) expect(u.has(k), k).toBe(false);
    const dropped = one(u, 'CapabilityBoundingSet')!;
    expect(dropped.startsWith('~')).toBe(true);
    for (const cap of ['CAP_SETUID', 'CAP_SETGID', 'CAP_KILL', 'CAP_CHOWN', 'CAP_SYS_ADMIN']) expect(dropped).not.toContain(cap);
  });

  it.runIf(analyze)('systemd-analyze verifies every unit and scores the server roles OK (exposure <= 2)', () => {
    for (const f of ['nuri-api.service', 'nuri-gateway.service', 'nuri-scheduler.service', 'nuri-agent.service']) {
      const path = join(ROOT, 'deploy/systemd', f);
      const v = spawnSync('systemd-analyze', ['verify', '--man=no', path], { encoding: 'utf8' });
      // systemd < 254 does not know DelegateSubgroup (the unit's comment says what happens then).
      const problems = `${v.stdout}${v.stderr}`.split('\n').filter((l) => l.trim() && !/Unknown key 'DelegateSubgroup'/.test(l));
      expect(problems, f).toEqual([]);
      const s = spawnSync('systemd-analyze', ['security', '--offline=true', '--no-pager', path], { encoding: 'utf8' });
      const score = Number(/Overall exposure level for \S+: ([\d.]+)/.exec(`${s.stdout}${s.stderr}`)?.[1]);
      expect(score, `${f}: ${s.stdout.slice(-200)}`).toBeLessThanOrEqual(f === 'nuri-agent.service' ? 8 : 2);
    }
  });
});
