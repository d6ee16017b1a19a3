import { chmodSync, existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { JobEvent, StartJob } from '@nuri/contracts';
import { JobRunner } from '../../apps/agent/src/runner';

function setup(logCapBytes?: number) {
  const dir = mkdtempSync(join(tmpdir(), 'nuri-runner-'));
  const events: JobEvent[] = [];
  const waiters: Array<() => void> = [];
  const runner = new JobRunner({ workDir: dir, logCapBytes, onEvent: (e) => { events.push(e); waiters.splice(0).forEach((w) => w()); } });
  const exited = async (jobId: string, timeoutMs = 10_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const e = events.find((x) => x.jobId === jobId && x.kind === 'exited');
      if (e) return e as Extract<JobEvent, { kind: 'exited' }>;
      if (Date.now() > deadline) throw new Error(`no exit for ${jobId}`);
      await new Promise<void>((r) => { waiters.push(r); setTimeout(r, 100); });
    }
  };
  return { dir, events, runner, exited };
}

const job = (jobId: string, command: string[], extra: Partial<StartJob> = {}): StartJob => ({
  v: 1, type: 'start', jobId, command, env: {}, workingDir: null, gpuIndices: [0, 1], timeLimitSeconds: 60, graceSeconds: 1, ...extra,
});

let cleanup: JobRunner[] = [];
afterEach(async () => { await Promise.all(cleanup.map((r) => r.stopAll('test end', 0))); cleanup = []; });

describe('JobRunner', () => {
  it('runs sleep 1 to exit 0 and reports started then exited', async () => {
    const { runner, events, exited } = setup(); cleanup.push(runner);
    runner.start(job('j1', ['sleep', '1']));
    expect(runner.running()).toEqual(['j1']);
    const e = await exited('j1');
    expect(e).toMatchObject({ exitCode: 0, signal: null, cause: 'exit' });
    expect(events[0]).toMatchObject({ kind: 'started', jobId: 'j1' });
    expect((events[0] as { pid: number }).pid).toBeGreaterThan(0);
    expect(runner.running()).toEqual([]);
  });

  it("reports sh -c 'exit 3' as exit code 3", async () => {
    const { runner, exited } = setup(); cleanup.push(runner);
    runner.start(job('j3', ['sh', '-c', 'exit 3']));
    expect(await exited('j3')).toMatchObject({ exitCode: 3, cause: 'exit' });
  });

  it('reports a missing binary as spawn_failed with a null exit code', async () => {
    const { runner, events, exited } = setup(); cleanup.push(runner);
    runner.start(job('jx', ['/nonexistent/definitely-not-here']));
    expect(await exited('jx')).toMatchObject({ exitCode: null, cause: 'spawn_failed' });
    expect(events.some((e) => e.kind === 'started')).toBe(false);
  });

  it('passes only the documented environment, with CUDA_VISIBLE_DEVICES and NURI_JOB_ID', async () => {
    const { runner, exited } = setup(); cleanup.push(runner);
    process.env.NURI_SECRET_TEST = 'leak';
    runner.start(job('jenv', ['sh', '-c', 'env; pwd'], { env: { FOO: 'bar', NURI_JOB_ID: 'spoof' }, gpuIndices: [2, 5] }));
    await exited('jenv');
    const log = readFileSync(runner.logPath('jenv'), 'utf8');
    expect(log).toContain('CUDA_VISIBLE_DEVICES=2,5');
    expect(log).toContain('NURI_JOB_ID=jenv');
    expect(log).toContain('FOO=bar');
    expect(log).not.toContain('NURI_SECRET_TEST');
    delete process.env.NURI_SECRET_TEST;
  });

  it('caps the log file', async () => {
    const { runner, exited } = setup(1000); cleanup.push(runner);
    runner.start(job('jlog', ['sh', '-c', 'i=0; while [ $i -lt 500 ]; do echo 0123456789; i=$((i+1)); done']));
    expect(await exited('jlog')).toMatchObject({ exitCode: 0 });
    const log = readFileSync(runner.logPath('jlog'), 'utf8');
    expect(log.length).toBeLessThan(1200);
    expect(log).toContain('log cap');
  });

  it('kills the whole process group at the time limit (SIGTERM ignored -> SIGKILL) and reports timeout', async () => {
    const { runner, exited, dir } = setup(); cleanup.push(runner);
    const pids = join(dir, 'pids');
    // The leader ignores SIGTERM and starts a grandchild (a nested sh) that also ignores it.
    const script = `trap '' TERM; sh -c "trap '' TERM; echo \\$\\$ > ${pids}.gc; while true; do sleep 0.1; done" & echo $$ > ${pids}.leader; while true; do sleep 0.1; done`;
    runner.start(job('jt', ['sh', '-c', script], { timeLimitSeconds: 1, graceSeconds: 1 }));
    const e = await exited('jt');
    expect(e).toMatchObject({ cause: 'timeout', signal: 'SIGKILL' });
    const leader = Number(readFileSync(`${pids}.leader`, 'utf8'));
    expect(existsSync(`${pids}.gc`)).toBe(true);
    const gc = Number(readFileSync(`${pids}.gc`, 'utf8'));
    // A killed orphan may linger as a zombie until its new parent reaps it: that counts as dead.
    const dead = (pid: number) => { try { return / [ZX] /.test(readFileSync(`/proc/${pid}/stat`, 'utf8')); } catch { return true; } };
    expect(dead(leader)).toBe(true);
    expect(dead(gc)).toBe(true);
  });

  it('stops a job on request with cause cancelled, SIGTERM honoured within grace', async () => {
    const { runner, exited } = setup(); cleanup.push(runner);
    runner.start(job('jc', ['sleep', '30']));
    await new Promise((r) => setTimeout(r, 100));
    expect(runner.stop({ jobId: 'jc', reason: 'preempted', graceSeconds: 5 })).toBe(true);
    const e = await exited('jc', 3000);
    expect(e).toMatchObject({ cause: 'cancelled', signal: 'SIGTERM', exitCode: null });
    expect(e.message).toContain('preempted');
  });
});

describe('running jobs as an unprivileged user', () => {
  // Only a root agent can switch users; CI and the development machines run as root.
  it.runIf(process.getuid?.() === 0)('runs the job as the configured uid and gid, in a directory it owns', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-runas-'));
    chmodSync(dir, 0o755);
    const events: JobEvent[] = [];
    const runner = new JobRunner({ workDir: dir, runAs: { uid: 65534, gid: 65534, user: 'nobody' }, onEvent: (e) => events.push(e) });
    runner.start({ v: 1, type: 'start', jobId: 'ra', command: ['sh', '-c', 'echo "$(id -u):$(id -g):$USER"; touch "$HOME/written"'], env: {}, workingDir: null, gpuIndices: [0], timeLimitSeconds: 30, graceSeconds: 1 } as StartJob);
    for (let i = 0; i < 100 && !events.some((e) => e.kind === 'exited'); i++) await new Promise((r) => setTimeout(r, 50));
    expect(events.find((e) => e.kind === 'exited')).toMatchObject({ exitCode: 0, cause: 'exit' });
    expect(readFileSync(runner.logPath('ra'), 'utf8')).toContain('65534:65534:nobody');
    expect(statSync(join(dir, 'jobs', 'ra', 'written')).uid).toBe(65534);
    expect(statSync(runner.logPath('ra')).uid).toBe(0);
  });
});
