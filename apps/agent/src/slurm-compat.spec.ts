import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { JobEvent, StartJob } from '@nuri/contracts';
import type { IsolationOptions } from './isolation';
import { DEFAULT_PATH, JobRunner } from './runner';
import { compatBinDir, installSlurmCompat, SCONTROL, SRUN, withCompatPath } from './slurm-compat';

/** The srun and scontrol shims, run by the shells a node may have as sh, and in real jobs. */
const scratch = mkdtempSync(join(tmpdir(), 'nuri-slurm-compat-'));
chmodSync(scratch, 0o755);
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
mkdirSync(join(scratch, 'agent'));
const bin = installSlurmCompat(join(scratch, 'agent'));

const SHELLS = ['/bin/sh', '/usr/bin/dash', '/usr/bin/bash', '/bin/busybox'].filter((s) => existsSync(s));
const NODELIST = 'h100-01,h100-02';

describe.each(SHELLS)('with %s', (shell) => {
  /** Runs a shim under this shell, in a fresh directory, with a job's Slurm variables. */
  const run = (name: 'srun' | 'scontrol', args: string[], env: Record<string, string> = {}) => {
    const cwd = mkdtempSync(join(scratch, 'cwd-'));
    const r = spawnSync(shell, [join(bin, name), ...args], {
      cwd,
      env: { PATH: DEFAULT_PATH, SLURM_NNODES: '2', SLURM_JOB_NODELIST: NODELIST, ...env },
      encoding: 'utf8',
    });
    return { code: r.status, out: r.stdout, err: r.stderr, pid: r.pid, cwd };
  };
  const ARGS = ['a b', '"quoted"', "it's", '$(touch pwned)', '`touch pwned2`', '*', '', '--ntasks', '-n', '$HOME'];
  const PRINTED = ARGS.map((a) => `[${a}]`).join('\n') + '\n';

  it('srun skips its options (with values, attached, as flags) and runs the command with its arguments exactly as given', () => {
    const r = run('srun', [
      '--kill-on-bad-exit=1', '--ntasks', '2', '--nodes=2', '-N2', '-n', '2', '--ntasks-per-node', '1', '-l', '-u', '--label', '--unbuffered',
      '-K', '-K1', '--kill-on-bad-exit', '--export', 'ALL', '--container-image', 'nvcr.io/nvidia/pytorch:24.01-py3', '--mpi', 'pmix', '--cpu-bind', 'cores',
      '--cpus-per-task', '96', '--gpus-per-node', '8', '-c', '8', '-c8', '-G', '8', '-t', '10', '-J', 'x y', '-o', 'out', '-e', 'err', '-w', 'h100-01',
      '-D', '/tmp', '--container-mounts=/data:/data', '--', 'printf', '[%s]\\n', ...ARGS,
    ]);
    expect(r).toMatchObject({ code: 0, err: '', out: PRINTED });
    expect(existsSync(join(r.cwd, 'pwned')) || existsSync(join(r.cwd, 'pwned2'))).toBe(false);
    // Without -- the first word that is not an option is the command.
    expect(run('srun', ['-l', 'printf', '[%s]\\n', ...ARGS])).toMatchObject({ code: 0, err: '', out: PRINTED });
    expect(run('srun', ['printf', '%s\\n', '-n', '--', '-l'])).toMatchObject({ code: 0, out: '-n\n--\n-l\n' });
  });

  it('srun becomes the command (exec: same process, its exit status) and says when a task count is not one per node', () => {
    const self = run('srun', ['--ntasks=2', 'sh', '-c', 'echo $$']);
    expect(Number(self.out)).toBe(self.pid);
    expect(run('srun', ['sh', '-c', 'exit 7']).code).toBe(7);
    const many = run('srun', ['-n', '16', '--ntasks-per-node=8', 'echo', 'ran']);
    expect(many).toMatchObject({ code: 0, out: 'ran\n' });
    expect(many.err).toBe(
      [
        "srun (Nuri): -n 16 is not used: the command runs once on each of the job's 2 node(s), as the batch script does (start one process per GPU with torchrun)",
        "srun (Nuri): --ntasks-per-node 8 is not used: the command runs once on each of the job's 2 node(s), as the batch script does (start one process per GPU with torchrun)",
        '',
      ].join('\n'),
    );
    expect(run('srun', ['-n1', 'true'], { SLURM_NNODES: '1' }).err).toBe('');
  });

  it('srun refuses an option it does not know, a missing value and a missing command, running nothing', () => {
    const unknown = run('srun', ['--frobnicate', 'touch', 'ran']);
    expect(unknown).toMatchObject({ code: 2, out: '' });
    expect(unknown.err).toBe('srun (Nuri): --frobnicate: not an option srun knows in a Nuri job (give its value as --frobnicate=value, or run the command without srun)\n');
    expect(existsSync(join(unknown.cwd, 'ran'))).toBe(false);
    expect(run('srun', ['-n'])).toMatchObject({ code: 2, err: 'srun (Nuri): -n needs a value\n' });
    expect(run('srun', ['--export'])).toMatchObject({ code: 2, err: 'srun (Nuri): --export needs a value\n' });
    expect(run('srun', ['-l', '--'])).toMatchObject({ code: 2, err: 'srun (Nuri): no command given\n' });
    expect(run('srun', [])).toMatchObject({ code: 2, err: 'srun (Nuri): no command given\n' });
  });

  it('scontrol show hostnames prints the job node list (or the one given) one name per line, literally', () => {
    expect(run('scontrol', ['show', 'hostnames'])).toMatchObject({ code: 0, err: '', out: 'h100-01\nh100-02\n' });
    expect(run('scontrol', ['show', 'hostname', 'n1'])).toMatchObject({ code: 0, out: 'n1\n' });
    const odd = run('scontrol', ['show', 'hostnames', 'a,,$(touch pwned),*,b c']);
    expect(odd).toMatchObject({ code: 0, out: 'a\n$(touch pwned)\n*\nb c\n' });
    expect(existsSync(join(odd.cwd, 'pwned'))).toBe(false);
  });

  it('scontrol refuses everything else, saying only show hostnames is provided', () => {
    const only = "scontrol (Nuri): only 'scontrol show hostnames [list]' is provided in a Nuri job\n";
    for (const args of [['show', 'job', '123'], [], ['show'], ['update', 'job=1'], ['show', 'hostnames', 'a', 'b']]) expect(run('scontrol', args)).toMatchObject({ code: 1, out: '', err: only });
    expect(run('scontrol', ['show', 'hostnames', 'h100-[01-02]'])).toMatchObject({
      code: 1,
      err: "scontrol (Nuri): h100-[01-02]: bracketed host ranges are not expanded; Nuri node lists (SLURM_JOB_NODELIST) are comma-separated names\n",
    });
    expect(run('scontrol', ['show', 'hostnames'], { SLURM_JOB_NODELIST: '' })).toMatchObject({ code: 1, err: 'scontrol (Nuri): no node list given and SLURM_JOB_NODELIST is not set\n' });
  });
});

describe('installing the shims', () => {
  it('writes agent-owned directories 0755 and shims 0555 that jobs can run but not change', () => {
    const me = process.getuid!();
    for (const d of [join(scratch, 'agent', 'compat'), bin]) expect(statSync(d)).toMatchObject({ uid: me, mode: expect.any(Number) });
    expect(statSync(bin).mode & 0o7777).toBe(0o755);
    expect(statSync(join(scratch, 'agent', 'compat')).mode & 0o7777).toBe(0o755);
    for (const [name, text] of [['srun', SRUN], ['scontrol', SCONTROL]] as const) {
      const st = lstatSync(join(bin, name));
      expect(st.isFile()).toBe(true);
      expect(st.mode & 0o7777).toBe(0o555);
      expect(st.uid).toBe(me);
      expect(readFileSync(join(bin, name), 'utf8')).toBe(text);
    }
  });

  it('rewrites a shim that differs and replaces a link without writing through it', () => {
    const work = join(scratch, 'again');
    mkdirSync(work);
    const b = installSlurmCompat(work);
    chmodSync(join(b, 'srun'), 0o755);
    writeFileSync(join(b, 'srun'), '#!/bin/sh\necho tampered\n');
    const victim = join(scratch, 'victim');
    writeFileSync(victim, 'untouched');
    rmSync(join(b, 'scontrol'));
    symlinkSync(victim, join(b, 'scontrol'));
    installSlurmCompat(work);
    expect(readFileSync(join(b, 'srun'), 'utf8')).toBe(SRUN);
    expect(lstatSync(join(b, 'srun')).mode & 0o7777).toBe(0o555);
    expect(lstatSync(join(b, 'scontrol')).isSymbolicLink()).toBe(false);
    expect(readFileSync(join(b, 'scontrol'), 'utf8')).toBe(SCONTROL);
    expect(readFileSync(victim, 'utf8')).toBe('untouched');
  });

  it('refuses a compat directory that is a link', () => {
    const work = join(scratch, 'linked');
    mkdirSync(work);
    mkdirSync(join(scratch, 'elsewhere'));
    symlinkSync(join(scratch, 'elsewhere'), join(work, 'compat'));
    expect(() => installSlurmCompat(work)).toThrow();
    expect(existsSync(join(scratch, 'elsewhere', 'bin'))).toBe(false);
  });

  it('appends the directory to a PATH once, and to nothing as itself', () => {
    expect(withCompatPath('/usr/bin:/bin', '/c/bin')).toBe('/usr/bin:/bin:/c/bin');
    expect(withCompatPath('/c/bin:/usr/bin', '/c/bin')).toBe('/c/bin:/usr/bin');
    expect(withCompatPath('', '/c/bin')).toBe('/c/bin');
  });
});

/** A Slurm-style batch script as a real job of the runner: srun and scontrol found on its PATH. */
const ROOT = process.getuid?.() === 0;
const runners: JobRunner[] = [];
afterEach(async () => {
  await Promise.all(runners.splice(0).map((r) => r.stopAll('test end', 0)));
});
const firstUid = 340_000 + (process.pid % 500) * 1000;

describe.each([
  ['with the cgroup gate', { cgroup: 'auto', ...(ROOT ? { uidRange: { first: firstUid, last: firstUid + 49 } } : {}) } as IsolationOptions],
  ['without a cgroup', { cgroup: 'none' } as IsolationOptions],
])('a batch script written for Slurm, run by the agent %s', (_how, isolation) => {
  it('finds srun and scontrol on its PATH (its own PATH too) and sees one task per node in the Slurm variables', async () => {
    const dir = mkdtempSync(join(scratch, 'runner-'));
    const events: JobEvent[] = [];
    const runner = new JobRunner({ workDir: dir, isolation, nodeName: 'h100-02', onEvent: (e) => events.push(e) });
    runners.push(runner);
    const script = [
      '#!/bin/bash',
      '#SBATCH --nodes=2',
      'export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
      'echo "first=$MASTER_ADDR path=$PATH"',
      'echo "slurm procid=$SLURM_PROCID localid=$SLURM_LOCALID ntasks=$SLURM_NTASKS per_node=$SLURM_NTASKS_PER_NODE tasks=$SLURM_TASKS_PER_NODE' +
        ' gpus=$SLURM_GPUS_ON_NODE num_nodes=$SLURM_JOB_NUM_NODES nodelist=$SLURM_NODELIST nodename=$SLURMD_NODENAME"',
      'srun --kill-on-bad-exit=1 --ntasks-per-node 1 printf "[%s]\\n" "$@"',
    ].join('\n');
    const launch = { rank: 1, nodes: ['h100-01', 'h100-02'], masterAddr: '10.0.0.1', masterPort: 29501, gpusPerNode: 8 };
    for (const [jobId, env] of [['j-default', {}], ['j-own-path', { PATH: '/usr/bin:/bin' }]] as const) {
      const start: StartJob = {
        v: 1, type: 'start', jobId, command: ['two words', '$(id)'], env, workingDir: null, gpuIndices: [0, 1, 2, 3, 4, 5, 6, 7],
        timeLimitSeconds: 60, graceSeconds: 1, script, launch,
      };
      runner.start(start);
      const end = Date.now() + 20_000;
      let exited: JobEvent | undefined;
      while (!(exited = events.find((e) => e.jobId === jobId && e.kind === 'exited'))) {
        if (Date.now() > end) throw new Error(`no exit of ${jobId}: ${JSON.stringify(events)}`);
        await new Promise((r) => setTimeout(r, 25));
      }
      const out = readFileSync(runner.logPath(jobId), 'utf8');
      expect(exited, out).toMatchObject({ exitCode: 0, cause: 'exit' });
      expect(out).toContain(`first=h100-01 path=${env.PATH ?? DEFAULT_PATH}:${compatBinDir(dir)}\n`);
      expect(out).toContain('slurm procid=1 localid=0 ntasks=2 per_node=1 tasks=1(x2) gpus=8 num_nodes=2 nodelist=h100-01,h100-02 nodename=h100-02\n');
      expect(out).toContain('[two words]\n[$(id)]\n');
    }
  });
});
