import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { JobEvent, StartJob } from '@nuri/contracts';
import { Agent } from '../../apps/agent/src/agent';
import { loadConfig } from '../../apps/agent/src/config';
import { charMajors, gateArgs, parseBytes, parseUidRange, type IsolationOptions } from '../../apps/agent/src/isolation';
import { JobRunner } from '../../apps/agent/src/runner';
import { AgentGateway } from '../../apps/server/src/gateway/transport';
import { FakeFleet } from './fake-fleet';

/**
 * Job isolation on a node, asserted for real: CI and the development machines run as root
 * with writable cgroup v1 hierarchies (pids, freezer, memory, devices) and a cgroup2
 * hierarchy without controllers at /sys/fs/cgroup/unified. A machine without them fails
 * here loudly rather than skipping what the product promises.
 */
const ROOT = process.getuid?.() === 0;
// Each runner gets its own slice of uids, so test files and runners never share one.
let nextUid = 310_000 + (process.pid % 500) * 1000;
const uidRange = () => {
  const first = nextUid;
  nextUid += 50;
  return { first, last: first + 49 };
};

interface Harness {
  runner: JobRunner;
  dir: string;
  events: JobEvent[];
  logs: string[];
  started: (jobId: string) => Promise<number>;
  exited: (jobId: string, timeoutMs?: number) => Promise<Extract<JobEvent, { kind: 'exited' }>>;
  output: (jobId: string) => string;
}

const runners: JobRunner[] = [];
const strays: number[] = [];
afterEach(async () => {
  await Promise.all(runners.splice(0).map((r) => r.stopAll('test end', 0)));
});
afterAll(() => {
  for (const p of strays) signal(p, 'SIGKILL');
});

function harness(isolation: IsolationOptions = {}, extra: { workDir?: string; runAs?: { uid: number; gid: number } } = {}): Harness {
  const dir = extra.workDir ?? mkdtempSync(join(tmpdir(), 'nuri-iso-'));
  const events: JobEvent[] = [];
  const logs: string[] = [];
  const runner = new JobRunner({ workDir: dir, isolation, runAs: extra.runAs, onEvent: (e) => events.push(e), log: (m) => logs.push(m) });
  runners.push(runner);
  const wait = async <T>(f: () => T | undefined, what: string, timeoutMs = 15_000): Promise<T> => {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const v = f();
      if (v !== undefined) return v;
      if (Date.now() > end) throw new Error(`timeout: ${what}; events ${JSON.stringify(events)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return {
    runner,
    dir,
    events,
    logs,
    started: (jobId) => wait(() => (events.find((e) => e.jobId === jobId && e.kind === 'started') as { pid: number } | undefined)?.pid, `${jobId} started`),
    exited: (jobId, timeoutMs) => wait(() => events.find((e): e is Extract<JobEvent, { kind: 'exited' }> => e.jobId === jobId && e.kind === 'exited'), `${jobId} exited`, timeoutMs),
    output: (jobId) => readFileSync(runner.logPath(jobId), 'utf8'),
  };
}

const job = (jobId: string, script: string, extra: Partial<StartJob> = {}): StartJob => ({
  v: 1, type: 'start', jobId, command: ['sh', '-c', script], env: {}, workingDir: null, gpuIndices: [0], timeLimitSeconds: 60, graceSeconds: 1, ...extra,
});

function signal(pid: number, sig: NodeJS.Signals | 0): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}
/** Gone, or a zombie waiting for its new parent to reap it (this sandbox's init is slow to). */
const dead = (pid: number) => {
  try {
    return / [ZX] /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
};
const until = async (pred: () => boolean, what: string, ms = 10_000) => {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timeout: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};
const readPid = async (file: string) => {
  await until(() => existsSync(file) && /^\d+\s*$/.test(readFileSync(file, 'utf8')), `pid in ${file}`);
  return Number(readFileSync(file, 'utf8'));
};

describe('the machine this runs on', () => {
  it('is root with writable cgroup v1 hierarchies (else these tests cannot assert isolation)', () => {
    expect(ROOT, 'the isolation tests need root (CI runs as root)').toBe(true);
    const h = harness({ uidRange: uidRange() });
    expect(h.logs, 'no fallback warning on this machine').toEqual([]);
    expect(h.runner.isolation).toMatchObject({ cgroup: 'v1', pids: true, memory: false, devices: true, uids: 'range' });
    expect(harness({ memoryPerGpuBytes: 64 << 20 }).runner.isolation).toMatchObject({ cgroup: 'v1', memory: true, uids: 'none' });
  });
});

describe('a cgroup per job (v1)', () => {
  it('places the job in its cgroups before it runs, as its own uid with a private directory', async () => {
    const h = harness({ uidRange: uidRange() });
    h.runner.start(job('placed', 'cat /proc/self/cgroup; id -u; id -g; id -G; echo "HOME=$HOME"; pwd; touch "$HOME/mine"'));
    expect(await h.exited('placed')).toMatchObject({ exitCode: 0, cause: 'exit' });
    const out = h.output('placed');
    for (const c of ['pids', 'freezer', 'memory', 'devices']) expect(out).toMatch(new RegExp(`^\\d+:${c}:.*/nuri/w[0-9a-f]+/job-placed\\.[a-z0-9]+$`, 'm'));
    const [uid, gid, groups] = out.split('\n').filter((l) => /^\d+$/.test(l));
    expect(Number(uid)).toBeGreaterThanOrEqual(310_000);
    expect(gid).toBe(uid);
    expect(groups).toBe(uid); // no supplementary groups of the agent's
    const jobDir = h.runner.jobDir('placed');
    expect(out).toContain(`HOME=${jobDir}\n${jobDir}\n`);
    expect(jobDir.startsWith('/')).toBe(true);
    expect(statSync(join(jobDir, 'mine')).uid).toBe(Number(uid));
    // After the job: its directory is root's again (a later job with that uid cannot read it).
    expect(statSync(jobDir)).toMatchObject({ uid: 0, gid: 0 });
    expect(statSync(jobDir).mode & 0o777).toBe(0o700);
    // Output: written by the agent, in directories only root may enter.
    expect(statSync(h.runner.logPath('placed'))).toMatchObject({ uid: 0 });
    expect(statSync(h.runner.logPath('placed')).mode & 0o777).toBe(0o600);
    expect(statSync(join(h.dir, 'output')).mode & 0o777).toBe(0o700);
    expect(statSync(join(h.dir, 'jobs')).mode & 0o777).toBe(0o711);
  });

  it('while it runs, the job directory is its uid with mode 0700', async () => {
    const h = harness({ uidRange: uidRange() });
    h.runner.start(job('owner', 'sleep 30'));
    await h.started('owner');
    const st = statSync(h.runner.jobDir('owner'));
    expect(st.uid).toBe(h.runner.uidOf('owner'));
    expect(st.gid).toBe(h.runner.uidOf('owner'));
    expect(st.mode & 0o777).toBe(0o700);
  });

  it('kills a daemonized child (setsid) when the job exits, and removes the cgroup', async () => {
    const h = harness({ uidRange: uidRange() });
    h.runner.start(job('daemon', 'setsid sh -c \'echo $$ > "$HOME/daemon.pid"; exec sleep 600\' & sleep 0.3; exit 0'));
    await h.started('daemon');
    const cg = h.runner.cgroupOf('daemon')!;
    const daemon = await readPid(join(h.runner.jobDir('daemon'), 'daemon.pid'));
    strays.push(daemon);
    expect(cg.pids()).toContain(daemon);
    expect(await h.exited('daemon')).toMatchObject({ exitCode: 0, cause: 'exit' });
    expect(dead(daemon)).toBe(true);
    for (const d of cg.dirs) expect(existsSync(d)).toBe(false);
  });

  it('kills a daemonized child when the job is stopped or times out', async () => {
    const h = harness({ uidRange: uidRange() });
    const script = 'trap "" TERM; setsid sh -c \'trap "" TERM; echo $$ > "$HOME/daemon.pid"; while :; do sleep 1; done\' & sleep 600';
    h.runner.start(job('stopped', script));
    h.runner.start(job('timed', script, { timeLimitSeconds: 1 }));
    const d1 = await readPid(join(h.runner.jobDir('stopped'), 'daemon.pid'));
    const d2 = await readPid(join(h.runner.jobDir('timed'), 'daemon.pid'));
    strays.push(d1, d2);
    h.runner.stop({ jobId: 'stopped', reason: 'cancelled', graceSeconds: 1 });
    expect(await h.exited('stopped')).toMatchObject({ cause: 'cancelled' });
    expect(await h.exited('timed')).toMatchObject({ cause: 'timeout' });
    expect(dead(d1)).toBe(true);
    expect(dead(d2)).toBe(true);
  });

  it('a daemon outlives its job without cgroup or uid (the control for the tests above)', async () => {
    const h = harness({ cgroup: 'none' });
    expect(h.runner.isolation).toMatchObject({ cgroup: 'none', uids: 'none' });
    h.runner.start(job('free', 'setsid sh -c \'echo $$ > "$HOME/daemon.pid"; exec sleep 600\' & sleep 0.3'));
    const daemon = await readPid(join(h.runner.jobDir('free'), 'daemon.pid'));
    strays.push(daemon);
    await h.exited('free');
    await new Promise((r) => setTimeout(r, 200));
    expect(dead(daemon)).toBe(false);
    signal(daemon, 'SIGKILL');
  });

  it('caps a fork bomb at the pids limit, then kills it all', async () => {
    const h = harness({ uidRange: uidRange(), pidsMax: 20 });
    // The bomb runs beside a leader that stays, so the cgroup is there to look at.
    h.runner.start(job('bomb', 'sh -c \'n=0; while :; do sleep 600 & n=$((n+1)); echo $n > "$HOME/count"; done\' 2>/dev/null & exec sleep 600'));
    await h.started('bomb');
    const cg = h.runner.cgroupOf('bomb')!;
    const pidsDir = cg.dirs.find((d) => d.includes('/pids/'))!;
    expect(readFileSync(join(pidsDir, 'pids.max'), 'utf8').trim()).toBe('20');
    await until(() => /^max [1-9]/m.test(readFileSync(join(pidsDir, 'pids.events'), 'utf8')) || h.events.some((e) => e.kind === 'exited'), 'the limit hit');
    expect(/^max [1-9]/m.test(readFileSync(join(pidsDir, 'pids.events'), 'utf8'))).toBe(true);
    const pids = cg.pids();
    expect(pids.length).toBeLessThanOrEqual(20);
    h.runner.stop({ jobId: 'bomb', reason: 'cancelled', graceSeconds: 0 });
    await h.exited('bomb');
    expect(Number(readFileSync(join(h.runner.jobDir('bomb'), 'count'), 'utf8'))).toBeLessThan(20);
    for (const p of pids) expect(dead(p)).toBe(true);
    expect(existsSync(pidsDir)).toBe(false);
  });

  it('applies the memory limit per GPU: a job past it is killed', async () => {
    const h = harness({ uidRange: uidRange(), memoryPerGpuBytes: 24 << 20 });
    h.runner.start(job('mem', 'sleep 30', { gpuIndices: [0, 1] }));
    await h.started('mem');
    const memDir = h.runner.cgroupOf('mem')!.dirs.find((d) => d.includes('/memory/'))!;
    expect(Number(readFileSync(join(memDir, 'memory.limit_in_bytes'), 'utf8'))).toBe(48 << 20);
    // 200 MB in a shell variable against a 24 MiB limit: the OOM killer ends it.
    h.runner.start(job('hog', 'x=$(head -c 200000000 /dev/zero | tr "\\0" a); echo survived ${#x}', { gpuIndices: [3] }));
    const e = await h.exited('hog', 30_000);
    expect(e.signal).toBe('SIGKILL');
    expect(h.output('hog')).not.toContain('survived');
  });
});

describe('devices: a job opens only its own GPU', () => {
  // Fake GPU nodes with mknod on a major no driver registered: opening an allowed one fails
  // with ENXIO (no such device), a denied one with EPERM from the devices cgroup.
  let devDir: string;
  let major: number;
  beforeAll(() => {
    const used = charMajors();
    const free = [...Array.from({ length: 15 }, (_, i) => 240 + i), ...Array.from({ length: 8 }, (_, i) => 120 + i)].filter((m) => !used.has(m));
    expect(free.length, 'two unregistered character majors for fake GPUs').toBeGreaterThanOrEqual(2);
    major = free[0]!;
    const uvm = free[1]!;
    devDir = mkdtempSync(join(tmpdir(), 'nuri-dev-'));
    chmodSync(devDir, 0o755);
    const mknod = (name: string, maj: number, min: number) => execFileSync('mknod', ['-m', '666', join(devDir, name), 'c', String(maj), String(min)]);
    for (let i = 0; i < 4; i++) mknod(`nvidia${i}`, major, i);
    mknod('nvidiactl', major, 255);
    mknod('nvidia-modeset', major, 254);
    mknod('nvidia-uvm', uvm, 0);
    mknod('nvidia-uvm-tools', uvm, 1);
  });

  const probe = 'for d in nvidia0 nvidia1 nvidia2 nvidia3 nvidiactl nvidia-modeset nvidia-uvm nvidia-uvm-tools; do if cat "$DEV/$d" 2>"$HOME/err"; then echo "$d: opened"; else echo "$d: $(cat "$HOME/err")"; fi; done; echo x > /dev/null && head -c 4 /dev/zero | wc -c && echo "null and zero: ok"';
  const verdicts = (out: string) => Object.fromEntries([...out.matchAll(/^(nvidia[\w-]*): (.*)$/gm)].map((m) => [m[1]!, /Operation not permitted/.test(m[2]!) ? 'denied' : /No such device/.test(m[2]!) ? 'allowed' : m[2]!]));

  it('allows its own /dev/nvidia<N> and the control devices, denies the other GPUs; /dev/null still works', async () => {
    const h = harness({ uidRange: uidRange(), deviceDir: devDir });
    h.runner.start(job('gpu1', probe, { gpuIndices: [1], env: { DEV: devDir } }));
    h.runner.start(job('gpu23', probe, { gpuIndices: [2, 3], env: { DEV: devDir } }));
    await h.exited('gpu1');
    await h.exited('gpu23');
    const control = { nvidiactl: 'allowed', 'nvidia-modeset': 'allowed', 'nvidia-uvm': 'allowed', 'nvidia-uvm-tools': 'allowed' };
    expect(verdicts(h.output('gpu1'))).toEqual({ nvidia0: 'denied', nvidia1: 'allowed', nvidia2: 'denied', nvidia3: 'denied', ...control });
    expect(verdicts(h.output('gpu23'))).toEqual({ nvidia0: 'denied', nvidia1: 'denied', nvidia2: 'allowed', nvidia3: 'allowed', ...control });
    expect(h.output('gpu1')).toContain('null and zero: ok');
  });

  it('denies another GPU by any path, even a node a root job makes itself', async () => {
    const h = harness({ deviceDir: devDir }); // no uid range: the job runs as root
    h.runner.start(job('mk', `mknod "$HOME/mine" c ${major} 2 && cat "$HOME/mine"; mknod "$HOME/own" c ${major} 0 && cat "$HOME/own"; true`, { gpuIndices: [0] }));
    await h.exited('mk');
    const out = h.output('mk');
    expect(out).toMatch(/mine: Operation not permitted/);
    expect(out).toMatch(/own: No such device/);
  });
});

describe('tenants never share a uid', () => {
  it("a job cannot read another job's environ, write its directory or output, or signal it", async () => {
    const h = harness({ uidRange: uidRange() });
    h.runner.start(job('b', 'sleep 60', { env: { SECRET_B: 'b-secret' } }));
    const bPid = await h.started('b');
    const attack = [
      'cat /proc/$B/environ >/dev/null 2>&1 && echo "environ: READ" || echo "environ: refused"',
      'touch "$BDIR/planted" 2>/dev/null && echo "dir: WROTE" || echo "dir: refused"',
      'ls "$BDIR" >/dev/null 2>&1 && echo "list: LISTED" || echo "list: refused"',
      'cat "$BLOG" >/dev/null 2>&1 && echo "log: READ" || echo "log: refused"',
      'kill -9 $B 2>/dev/null && echo "kill: KILLED" || echo "kill: refused"',
      'cat /proc/$PPID/environ >/dev/null 2>&1 && echo "agent environ: READ" || echo "agent environ: refused"',
    ].join('; ');
    h.runner.start(job('a', attack, { env: { B: String(bPid), BDIR: h.runner.jobDir('b'), BLOG: h.runner.logPath('b') } }));
    expect(await h.exited('a')).toMatchObject({ exitCode: 0 });
    expect(h.runner.uidOf('b')).not.toBe(undefined);
    expect(h.output('a')).toBe(['environ: refused', 'dir: refused', 'list: refused', 'log: refused', 'kill: refused', 'agent environ: refused', ''].join('\n'));
    expect(h.runner.isRunning('b')).toBe(true);
    expect(existsSync(join(h.runner.jobDir('b'), 'planted'))).toBe(false);
  });

  it('two running jobs get two uids', async () => {
    const h = harness({ uidRange: { first: 399_990, last: 399_991 } });
    h.runner.start(job('u1', 'sleep 30'));
    h.runner.start(job('u2', 'sleep 30'));
    await h.started('u1');
    await h.started('u2');
    expect(new Set([h.runner.uidOf('u1'), h.runner.uidOf('u2')]).size).toBe(2);
    h.runner.start(job('u3', 'sleep 30'));
    expect(await h.exited('u3')).toMatchObject({ cause: 'spawn_failed', message: expect.stringContaining('no free uid') });
  });

  it("a root job can read the agent's environ (the control: uids are what stop it)", async () => {
    const h = harness();
    h.runner.start(job('rootjob', 'cat /proc/$PPID/environ >/dev/null && echo "agent environ: READ"'));
    await h.exited('rootjob');
    expect(h.output('rootjob')).toContain('agent environ: READ');
  });
});

describe('job output cannot be redirected', () => {
  it('the agent does not follow a symlink planted where it writes the log', async () => {
    const h = harness({ uidRange: uidRange() });
    const victim = join(h.dir, 'root-owned');
    writeFileSync(victim, 'precious\n');
    // What a job would need to plant (it cannot: the directory is root's, 0700); as if it had.
    mkdirSync(join(h.dir, 'output', 'sym'), { recursive: true });
    symlinkSync(victim, h.runner.logPath('sym'));
    h.runner.start(job('sym', 'echo overwritten'));
    expect(await h.exited('sym')).toMatchObject({ cause: 'spawn_failed', exitCode: null });
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
  });

  it('a job cannot plant a symlink where the agent writes, for this or a later attempt', async () => {
    const h = harness({ uidRange: uidRange() });
    const victim = join(h.dir, 'root-owned');
    writeFileSync(victim, 'precious\n');
    const plant = 'rm -f "$LOG" 2>/dev/null; ln -sf "$VICTIM" "$LOG" 2>/dev/null && echo PLANTED || echo refused; ln -sf "$VICTIM" "$HOME/output.log"; echo more';
    const env = { LOG: h.runner.logPath('plant'), VICTIM: victim };
    h.runner.start(job('plant', plant, { env, attempt: 1 }));
    expect(await h.exited('plant')).toMatchObject({ exitCode: 0 });
    h.runner.start(job('plant', plant, { env, attempt: 2 }));
    await until(() => h.events.filter((e) => e.kind === 'exited').length === 2, 'second attempt');
    expect(lstatSync(h.runner.logPath('plant')).isSymbolicLink()).toBe(false);
    // The later attempt appends under a line naming it: the earlier attempt's output stays.
    expect(h.output('plant')).toMatch(/^refused\nmore\n\n\[nuri-agent: attempt 2 of job plant starts at [0-9T:.Z-]+\]\nrefused\nmore\n$/);
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
  });
});

describe('the job starts through a gate that never parses its argv or env as shell code', () => {
  it('passes argv and env verbatim', async () => {
    const h = harness({ uidRange: uidRange() });
    const argv = ['$(id)', '`id`', '"; echo pwned', "'", '*', '', 'a\nb'];
    h.runner.start({ ...job('verbatim', ''), command: ['printf', '[%s]\\n', ...argv], env: { TRICKY: '$(id) `x` ";\n=', BASH_ENV: '/nonexistent', ENV: '/nonexistent' } });
    expect(await h.exited('verbatim')).toMatchObject({ exitCode: 0 });
    expect(h.output('verbatim')).toBe(argv.map((a) => `[${a}]\n`).join(''));
    h.runner.start({ ...job('env', ''), command: ['printenv', 'TRICKY'], env: { TRICKY: '$(id) `x` ";\n=' } });
    await h.exited('env');
    expect(h.output('env')).toBe('$(id) `x` ";\n=\n');
  });

  it('reports a missing command as spawn_failed, and a command name with "=" still runs', async () => {
    const h = harness({ uidRange: uidRange() });
    h.runner.start({ ...job('missing', ''), command: ['/definitely/not/here'] });
    expect(await h.exited('missing')).toMatchObject({ cause: 'spawn_failed', exitCode: null });
    expect(h.events.some((e) => e.jobId === 'missing' && e.kind === 'started')).toBe(false);
    expect(gateArgs({ sh: '/bin/sh', env: '/usr/bin/env' }, ['a=b', 'x'], { K: 'v' })).toEqual(['-c', 'read -r _ || exit 125; exec "$@" </dev/null', 'nuri-job', '/usr/bin/env', '-i', '--', 'K=v', '/bin/sh', '-c', 'exec "$@"', 'nuri-job', 'a=b', 'x']);
  });
});

describe('after an agent crash', () => {
  it('a new runner on the same work dir kills what the old one left in its cgroups', async () => {
    const h = harness({ uidRange: uidRange() });
    h.runner.start(job('orphan', 'setsid sh -c \'echo $$ > "$HOME/daemon.pid"; exec sleep 600\' & exec sleep 600'));
    const leader = await h.started('orphan');
    const daemon = await readPid(join(h.runner.jobDir('orphan'), 'daemon.pid'));
    strays.push(leader, daemon);
    runners.splice(runners.indexOf(h.runner), 1); // "crashed": nobody stops it
    const again = new JobRunner({ workDir: h.dir, isolation: { uidRange: uidRange() }, onEvent: () => undefined });
    expect([...again.leftovers]).toEqual(['orphan']);
    await again.leftoversKilled;
    expect(dead(leader)).toBe(true);
    expect(dead(daemon)).toBe(true);
    expect(await again.killLeftover('orphan')).toBe(false);
  });
});

describe('cgroup v2 (the unified hierarchy, no controllers on this machine)', () => {
  it('kills the whole cgroup with cgroup.kill, and reports pids, memory and devices as not enforced', async () => {
    const h = harness({ cgroup: 'v2', uidRange: uidRange() });
    expect(h.runner.isolation).toMatchObject({ cgroup: 'v2', pids: false, memory: false, devices: false, uids: 'range' });
    expect(h.logs.join('\n')).toMatch(/devices are not constrained: cgroup v2 needs an eBPF device program/);
    h.runner.start(job('v2', 'cat /proc/self/cgroup; setsid sh -c \'echo $$ > "$HOME/daemon.pid"; exec sleep 600\' & sleep 0.3'));
    const daemon = await readPid(join(h.runner.jobDir('v2'), 'daemon.pid'));
    strays.push(daemon);
    await h.exited('v2');
    expect(h.output('v2')).toMatch(/^0::\/.*nuri\/w[0-9a-f]+\/job-v2\.[a-z0-9]+$/m);
    expect(dead(daemon)).toBe(true);
  });
});

describe('where no cgroup is writable', () => {
  let roDir: string | undefined;
  afterAll(() => {
    if (!roDir) return;
    for (const c of ['freezer', 'pids', 'memory', 'devices']) {
      try {
        execFileSync('umount', [join(roDir, c)]);
      } catch {
        /* not mounted */
      }
    }
  });

  it('falls back to process groups (and the uid), says so, and reports it', async () => {
    // The real v1 hierarchies, bind-mounted read-only: present but not writable.
    roDir = mkdtempSync(join(tmpdir(), 'nuri-rocg-'));
    for (const c of ['freezer', 'pids', 'memory', 'devices']) {
      mkdirSync(join(roDir, c));
      execFileSync('mount', ['--bind', `/sys/fs/cgroup/${c}`, join(roDir, c)]);
      execFileSync('mount', ['-o', 'remount,bind,ro', join(roDir, c)]);
    }
    const h = harness({ cgroupRoot: roDir, uidRange: uidRange() });
    expect(h.runner.isolation).toMatchObject({ cgroup: 'none', pids: false, memory: false, devices: false, uids: 'range' });
    expect(h.logs.join('\n')).toMatch(/no usable cgroup .*v1: freezer: cannot create cgroups in .*process group only/);
    // Without a cgroup, the job's own uid still finds a daemon that left its process group.
    h.runner.start(job('fallback', 'setsid sh -c \'echo $$ > "$HOME/daemon.pid"; exec sleep 600\' & sleep 0.3'));
    const daemon = await readPid(join(h.runner.jobDir('fallback'), 'daemon.pid'));
    strays.push(daemon);
    expect(await h.exited('fallback')).toMatchObject({ exitCode: 0 });
    expect(dead(daemon)).toBe(true);
  });

  it("reports the isolation in the agent's hello", async () => {
    const fleet = new FakeFleet({ 'iso-a': 'tok', 'iso-b': 'tok' });
    const gw = new AgentGateway({ fleet, port: 0, pingIntervalMs: 1000 });
    await gw.start();
    const logs: string[] = [];
    const mk = (node: string, isolation: IsolationOptions) =>
      new Agent({ gatewayUrl: `ws://127.0.0.1:${gw.port}/agent`, nodeName: node, nodeToken: 'tok', workDir: mkdtempSync(join(tmpdir(), 'nuri-iso-agent-')), isolation, log: (l, m) => logs.push(`${l} ${m}`) });
    const a = mk('iso-a', { uidRange: uidRange() });
    const b = mk('iso-b', { cgroupRoot: '/nonexistent', uidRange: uidRange() });
    try {
      await a.start();
      await b.start();
      await fleet.until(() => fleet.hellos.length >= 2, 10_000, 'hellos');
      const hello = (n: string) => fleet.hellos.find((x) => x.node === n)!.hello;
      expect(hello('iso-a').isolation).toMatchObject({ cgroup: 'v1', pids: true, devices: true, uids: 'range' });
      expect(hello('iso-b').isolation).toMatchObject({ cgroup: 'none', pids: false, memory: false, devices: false, uids: 'range' });
      expect(hello('iso-b').isolation!.detail).toMatch(/no cgroup/);
      expect(logs.some((l) => /^warn .*iso-b.*no usable cgroup/.test(l))).toBe(true);
      expect(logs.some((l) => /iso-a.*no usable cgroup/.test(l))).toBe(false);
    } finally {
      await a.stop();
      await b.stop();
      await gw.stop();
    }
  });
});

describe('configuration', () => {
  it('parses the isolation flags and refuses bad values naming the flag', () => {
    const c = loadConfig(['--once', '--uid-range', '200000-265535', '--memory-per-gpu', '80G', '--constrain-devices', 'false', '--pids-max', '0'], {});
    expect(c).toMatchObject({ uidRange: { first: 200000, last: 265535 }, memoryPerGpu: 80 * 2 ** 30, constrainDevices: false, pidsMax: 0, cgroup: 'auto', deviceDir: '/dev' });
    expect(loadConfig(['--once'], { NURI_CGROUP: 'v1' }).cgroup).toBe('v1');
    expect(() => loadConfig(['--once', '--uid-range', '300-200'], {})).toThrow(/uidRange \(--uid-range/);
    expect(() => loadConfig(['--once', '--cgroup', 'v3'], {})).toThrow(/cgroup \(--cgroup/);
    expect(() => loadConfig(['--once', '--memory-per-gpu', 'lots'], {})).toThrow(/memoryPerGpu/);
    expect(() => loadConfig(['--uid-range', '200000-200100', '--run-as-uid', '1000', '--run-as-gid', '1000', '--gateway-url', 'ws://x', '--node-token', 't'], {})).toThrow(/exclude each other/);
    expect(parseUidRange('200000-265535')).toEqual({ first: 200000, last: 265535 });
    expect(() => parseUidRange('0-100')).toThrow(/1000/);
    expect(parseBytes('512Mi')).toBe(512 * 2 ** 20);
    expect(parseBytes('1073741824')).toBe(2 ** 30);
  });
});
