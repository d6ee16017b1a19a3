import { chmodSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { JobEvent, StartJob } from '@nuri/contracts';
import type { IsolationOptions } from './isolation';
import { JobRunner, SCRIPT_NAME } from './runner';

/**
 * Where a rank stands in its job, batch scripts and the working-directory check, with real
 * processes: with the cgroup gate (where the machine has one) and without it.
 */
const ROOT = process.getuid?.() === 0;
const firstUid = 330_000 + (process.pid % 500) * 1000;

const runners: JobRunner[] = [];
afterEach(async () => {
  await Promise.all(runners.splice(0).map((r) => r.stopAll('test end', 0)));
});

function harness(isolation: IsolationOptions) {
  const dir = mkdtempSync(join(tmpdir(), 'nuri-launch-'));
  chmodSync(dir, 0o755);
  const events: JobEvent[] = [];
  const runner = new JobRunner({ workDir: dir, isolation, nodeName: 'h100-02', onEvent: (e) => events.push(e) });
  runners.push(runner);
  const exited = async (jobId: string) => {
    const end = Date.now() + 20_000;
    for (;;) {
      const e = events.find((x) => x.jobId === jobId && x.kind === 'exited');
      if (e) return e as Extract<JobEvent, { kind: 'exited' }>;
      if (Date.now() > end) throw new Error(`no exit of ${jobId}: ${JSON.stringify(events)}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  const envOf = (jobId: string) =>
    Object.fromEntries(
      readFileSync(runner.logPath(jobId), 'utf8')
        .split('\n')
        .filter((l) => l.includes('='))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
  return { dir, runner, events, exited, envOf };
}

const start = (jobId: string, command: string[], extra: Partial<StartJob> = {}): StartJob => ({
  v: 1, type: 'start', jobId, command, env: {}, workingDir: null, gpuIndices: [0, 1, 2, 3, 4, 5, 6, 7], timeLimitSeconds: 60, graceSeconds: 1, ...extra,
});
const launch = { rank: 1, nodes: ['h100-01', 'h100-02'], masterAddr: '10.0.0.1', masterPort: 29501, gpusPerNode: 8 };

describe.each([
  ['with the cgroup gate', { cgroup: 'auto', ...(ROOT ? { uidRange: { first: firstUid, last: firstUid + 49 } } : {}) } as IsolationOptions],
  ['without a cgroup', { cgroup: 'none' } as IsolationOptions],
])('a rank of a job %s', (_how, isolation) => {
  it('gets its place in the job, forced over its own env, and an absolute HOME', async () => {
    const h = harness(isolation);
    // The gate variant runs where the machine gives the agent a cgroup (CI and development machines do).
    expect(h.runner.isolation.cgroup === 'none').toBe(isolation.cgroup === 'none');
    h.runner.start(start('j-env', ['env'], { env: { NODE_RANK: '7', WORLD_SIZE: '1', MY_VAR: 'mine' }, launch, array: { id: 'a1', taskId: 4 } }));
    expect(await h.exited('j-env')).toMatchObject({ exitCode: 0, cause: 'exit' });
    const env = h.envOf('j-env');
    expect(env).toMatchObject({
      NURI_JOB_ID: 'j-env',
      NURI_NODE: 'h100-02',
      NURI_NODE_RANK: '1',
      NURI_NUM_NODES: '2',
      NURI_NODELIST: 'h100-01,h100-02',
      NURI_GPUS_PER_NODE: '8',
      MASTER_ADDR: '10.0.0.1',
      MASTER_PORT: '29501',
      WORLD_SIZE: '16',
      NNODES: '2',
      NODE_RANK: '1',
      LOCAL_WORLD_SIZE: '8',
      NURI_ARRAY_JOB_ID: 'a1',
      NURI_ARRAY_TASK_ID: '4',
      SLURM_ARRAY_TASK_ID: '4',
      SLURM_ARRAY_JOB_ID: 'a1',
      SLURM_JOB_ID: 'j-env',
      SLURM_NNODES: '2',
      SLURM_NODEID: '1',
      SLURM_JOB_NODELIST: 'h100-01,h100-02',
      MY_VAR: 'mine',
    });
    expect(env.HOME).toBe(h.runner.jobDir('j-env'));
    expect(env.HOME?.startsWith('/')).toBe(true);
  });

  it('is rank 0 of 1 when the start has no launch (an older server), outside any array', async () => {
    const h = harness(isolation);
    h.runner.start(start('j-old', ['env'], { gpuIndices: [3, 4] }));
    await h.exited('j-old');
    const env = h.envOf('j-old');
    expect(env).toMatchObject({ NURI_NODE_RANK: '0', NURI_NUM_NODES: '1', NURI_NODELIST: 'h100-02', WORLD_SIZE: '2', LOCAL_WORLD_SIZE: '2', NNODES: '1' });
    expect(env.NURI_ARRAY_TASK_ID).toBeUndefined();
    expect(env.SLURM_ARRAY_TASK_ID).toBeUndefined();
  });

  it('runs a batch script from its own directory, 0500 and owned by its user, with the command as its arguments', async () => {
    const h = harness(isolation);
    const script = '#!/bin/sh\necho "args: $# $1 $2"\necho "me: $0"\nid -u\n';
    h.runner.start(start('j-script', ['first', 'two words'], { script, launch }));
    expect(await h.exited('j-script')).toMatchObject({ exitCode: 0, cause: 'exit' });
    const path = join(h.runner.jobDir('j-script'), SCRIPT_NAME);
    const out = readFileSync(h.runner.logPath('j-script'), 'utf8');
    expect(out).toContain('args: 2 first two words');
    expect(out).toContain(`me: ${path}`);
    const st = lstatSync(path);
    expect(st.mode & 0o777).toBe(0o500);
    const uid = Number(out.trim().split('\n').at(-1));
    expect(st.uid).toBe(uid);
    if (ROOT && isolation.uidRange) expect(uid).toBeGreaterThanOrEqual(isolation.uidRange.first);
  });

  it('never writes a script through a link an earlier attempt left in its directory', async () => {
    const h = harness(isolation);
    const victim = join(h.dir, 'victim');
    writeFileSync(victim, 'untouched');
    mkdirSync(h.runner.jobDir('j-link'), { recursive: true });
    symlinkSync(victim, join(h.runner.jobDir('j-link'), SCRIPT_NAME));
    h.runner.start(start('j-link', [], { script: '#!/bin/sh\necho fresh\n' }));
    expect(await h.exited('j-link')).toMatchObject({ exitCode: 0 });
    expect(readFileSync(victim, 'utf8')).toBe('untouched');
    expect(readFileSync(h.runner.logPath('j-link'), 'utf8')).toContain('fresh');
    expect(lstatSync(join(h.runner.jobDir('j-link'), SCRIPT_NAME)).isSymbolicLink()).toBe(false);
  });

  it('fails the start plainly when its working directory does not exist on the node', async () => {
    const h = harness(isolation);
    h.runner.start(start('j-cwd', ['true'], { workingDir: '/nonexistent/nuri-workdir' }));
    expect(await h.exited('j-cwd')).toMatchObject({ cause: 'spawn_failed', exitCode: null, message: 'working directory /nonexistent/nuri-workdir does not exist on node h100-02' });
    expect(h.events.some((e) => e.kind === 'started')).toBe(false);
    // A working directory that does exist is the job's cwd.
    h.runner.start(start('j-cwd2', ['pwd'], { workingDir: h.dir }));
    await h.exited('j-cwd2');
    expect(readFileSync(h.runner.logPath('j-cwd2'), 'utf8').trim()).toBe(h.dir);
  });
});
