import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from './errors';
import { parseStates, table, width } from './format';
import { runCli } from './program';
import { buildSubmit, directiveLines, exportEnv, parseTime, shellWords } from './submit';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'nuri-submit-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const script = (name: string, text: string) => {
  writeFileSync(join(dir, name), text);
  return name;
};
const build = (words: string[], flags: Record<string, unknown> = {}, opts: { commandMode?: boolean; env?: NodeJS.ProcessEnv } = {}) =>
  buildSubmit({ flags: flags as never, words, commandMode: opts.commandMode ?? false, cwd: dir, env: opts.env ?? {} });
const refusal = async (p: Promise<unknown>): Promise<string> => {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(UsageError);
  return (e as Error).message;
};

describe('batch script directives', () => {
  it('reads every supported #SBATCH and #NURI directive into the request, the script as its text and its arguments as the command', async () => {
    const text = [
      '#!/bin/bash',
      '# a comment between directives is fine',
      '#SBATCH -J 한국어-학습',
      '#SBATCH --nodes=2',
      '#SBATCH --gres=gpu:h100:8',
      '#SBATCH --time=1-02:03:04',
      '#SBATCH --qos=high',
      '#SBATCH -D runs',
      '#SBATCH --array=0-15:4%2',
      '#SBATCH --dependency=afterok:0123456789ab',
      '#SBATCH --export=NONE',
      '#SBATCH --no-requeue',
      '',
      '#NURI --env "GREETING=hello world"  # a trailing comment',
      'srun python train.py',
      '#SBATCH --this-is-not-read-after-the-first-command',
    ].join('\n');
    const { body, warnings } = await build([script('train.sh', text), '--epochs', '3']);
    expect(warnings).toEqual([]);
    expect(body).toEqual({
      name: '한국어-학습',
      gpus: 16,
      gpuType: 'h100',
      timeLimitSeconds: 86400 + 2 * 3600 + 3 * 60 + 4,
      command: ['--epochs', '3'],
      script: text,
      env: { GREETING: 'hello world' },
      workingDir: join(dir, 'runs'),
      priority: 'high',
      requeue: false,
      array: '0-15:4%2',
      dependency: 'afterok:0123456789ab',
    });
  });

  it('reads -G, --gpus-per-node, -p, --priority, short flags with values and Slurm defaults (name from the script)', async () => {
    const a = await build([script('a.sh', '#!/bin/sh\n#SBATCH -G 4\n#SBATCH -p h800\n#SBATCH -t 30\n#SBATCH --priority low\necho\n')]);
    expect(a.body).toMatchObject({ name: 'a.sh', gpus: 4, gpuType: 'h800', timeLimitSeconds: 1800, priority: 'low', command: [] });
    const b = await build([script('b.sh', '#!/bin/sh\n#SBATCH --gpus-per-node=8 -N 3 --time 4h\n')]);
    expect(b.body).toMatchObject({ gpus: 24, gpuType: 'any', timeLimitSeconds: 4 * 3600 });
    const c = await build([script('c.sh', '#!/bin/sh\n#SBATCH --gres=gpu:2\n#SBATCH -t 10:00\n')]);
    expect(c.body).toMatchObject({ gpus: 2, gpuType: 'any', timeLimitSeconds: 600 });
  });

  it('takes Slurm time formats and the short 90s/30m/4h/2d forms, and refuses anything else naming the flag', () => {
    const cases: [string, number][] = [
      ['5', 300],
      ['5:30', 330],
      ['1:00:00', 3600],
      ['1-2', 86400 + 7200],
      ['1-02:30', 86400 + 9000],
      ['1-00:00:05', 86405],
      ['90s', 90],
      ['30m', 1800],
      ['4h', 14400],
      ['2d', 172800],
    ];
    for (const [v, s] of cases) expect(parseTime('--time', v)).toBe(s);
    expect(() => parseTime('--time', 'soon')).toThrow(/^--time: "soon" is not a time limit \(MM, MM:SS, HH:MM:SS, D-HH/);
    expect(() => parseTime('--time', '1:2:3:4')).toThrow(/not a time limit/);
    expect(() => parseTime('--time', '0')).toThrow(/must be more than 0/);
    expect(() => parseTime('--time', '15-00:00:00')).toThrow(/at most 14 days/);
  });

  it('refuses an unknown directive, a bad value or a stray word with the file and line number', async () => {
    expect(await refusal(build([script('m.sh', '#!/bin/bash\n#SBATCH -J x\n#SBATCH -t 5\n#SBATCH --gpus-per-task=1\n')]))).toBe(
      'm.sh:4: #SBATCH --gpus-per-task: not supported by Nuri (Nuri runs the command once per node with all its GPUs; start one process per GPU with torchrun)',
    );
    expect(await refusal(build([script('c.sh', '#!/bin/bash\n#SBATCH -G 1 -t 5\n#SBATCH --constraint=a100\n')]))).toBe('c.sh:3: #SBATCH --constraint: not supported by Nuri');
    expect(await refusal(build([script('n.sh', '#!/bin/bash\n#NURI --frobnicate\n')]))).toBe('n.sh:2: #NURI --frobnicate: not supported by Nuri');
    expect(await refusal(build([script('t.sh', '#!/bin/bash\n#SBATCH -G 1\n#SBATCH --time=lunch\n')]))).toMatch(
      /^t\.sh:3: #SBATCH --time: "lunch" is not a time limit/,
    );
    expect(await refusal(build([script('w.sh', '#!/bin/bash\n#SBATCH -G 1 gpu\n')]))).toMatch(/^w\.sh:2: #SBATCH gpu: not a flag/);
    expect(await refusal(build([script('v.sh', '#!/bin/bash\n#SBATCH -t\n')]))).toMatch(/^v\.sh:2: #SBATCH --time: needs a value/);
    expect(await refusal(build([script('p.sh', '#!/bin/bash\n#SBATCH -G 1 -t 5 -p a100\n')]))).toBe('p.sh:2: #SBATCH --partition: "a100" is not a GPU type (h100, h800, any)');
    expect(await refusal(build([script('arr.sh', '#!/bin/bash\n#SBATCH -G 1 -t 5\n#SBATCH --array=5-1\n')]))).toBe(
      'arr.sh:3: #SBATCH --array: "5-1": the range ends before it starts',
    );
    expect(await refusal(build([script('dep.sh', '#!/bin/bash\n#SBATCH -G 1 -t 5 --dependency=after:abcdef12\n')]))).toMatch(
      /^dep\.sh:2: #SBATCH --dependency: "after" is not a dependency type/,
    );
    expect(await refusal(build([script('nosh.sh', 'python train.py\n')]))).toBe('nosh.sh:1: a batch script starts with #! naming its interpreter (e.g. #!/bin/bash)');
    expect(await refusal(build(['missing.sh', '--x']))).toMatch(/^missing\.sh: no such file \(to run a command on the node instead, put it after --/);
  });

  it('lets command-line flags win over directives, the GPU shape as a whole', async () => {
    const s = script('w.sh', '#!/bin/bash\n#SBATCH -J from-script -t 1:00:00 -N 2 --gpus-per-node=8 -p h100 --env A=1 --env B=1\n');
    const { body } = await build([s], { jobName: 'from-flag', time: '5', gpus: '4', env: ['B=2'] });
    expect(body).toMatchObject({ name: 'from-flag', timeLimitSeconds: 300, gpus: 4, gpuType: 'h100', env: { A: '1', B: '2' } });
    expect((await build([s], { nodes: '3' })).body.gpus).toBe(24);
    expect((await build([s], { partition: 'h800' })).body.gpuType).toBe('h800');
  });

  it('counts GPUs as Slurm does and refuses shapes Nuri cannot place, naming the rule', async () => {
    const cmd = (flags: Record<string, unknown>) => build(['python', 'x.py'], { time: '5', ...flags }, { commandMode: true });
    expect((await cmd({ nodes: '2', gpusPerNode: '8' })).body.gpus).toBe(16);
    expect((await cmd({ nodes: '2' })).body.gpus).toBe(16);
    expect((await cmd({ gpus: '16' })).body).toMatchObject({ gpus: 16, command: ['python', 'x.py'], name: 'python' });
    expect(await refusal(cmd({ nodes: '2', gpusPerNode: '4' }))).toBe(
      '--gpus-per-node: Nuri places multi-node jobs on whole 8-GPU nodes: with 2 nodes (--nodes) give 8 GPUs per node, or run on one node',
    );
    expect(await refusal(cmd({ gpus: '12' }))).toBe('--gpus 12: 1 to 8 GPUs on one node, or a multiple of 8 for whole nodes');
    expect(await refusal(cmd({ nodes: '2', gpus: '8' }))).toMatch(/^--gpus 8: Nuri places multi-node jobs on whole 8-GPU nodes: 2 nodes \(--nodes\) take 16 GPUs/);
    expect(await refusal(cmd({ gres: 'nvme:1' }))).toMatch(/^--gres: "nvme:1" is not gpu\[:type\]:count/);
    expect(await refusal(cmd({ gres: 'gpu:h100:8', partition: 'h800' }))).toBe('--partition h800 and --gres h100 disagree on the GPU type');
    expect(await refusal(cmd({}))).toMatch(/^say how many GPUs: -G\/--gpus N/);
    expect(await refusal(build(['x'], { gpus: '1' }, { commandMode: true }))).toMatch(/^give a time limit: -t\/--time/);
  });

  it('warns that -o/-e are ignored, pointing at nuri logs', async () => {
    const { warnings } = await build([script('o.sh', '#!/bin/bash\n#SBATCH -G 1 -t 5\n#SBATCH --output=slurm-%j.out\n')], { error: 'err.txt' });
    expect(warnings).toEqual([
      `o.sh:3: #SBATCH --output: ignored: Nuri keeps every job's output (stdout and stderr) itself; read it with "nuri logs <id>"`,
      `--error: ignored: Nuri keeps every job's output (stdout and stderr) itself; read it with "nuri logs <id>"`,
    ]);
  });

  it('runs a typical multi-node Slurm batch file: task counts that mean one task per node pass, resource flags Nuri does not use are warned about', async () => {
    const text = [
      '#!/bin/bash',
      '#SBATCH --job-name=llama-pretrain',
      '#SBATCH --nodes=2',
      '#SBATCH --ntasks-per-node=1',
      '#SBATCH --gpus-per-node=8',
      '#SBATCH --cpus-per-task=96',
      '#SBATCH --mem=0',
      '#SBATCH --exclusive',
      '#SBATCH --time=2-00:00:00',
      '#SBATCH --partition=h100',
      '#SBATCH --output=%x-%j.out',
      '#SBATCH --account=nlp',
      '#SBATCH --mail-type=END,FAIL --mail-user=me@example.com',
      '#SBATCH --signal=B:USR1@120 --open-mode=append --requeue',
      'srun torchrun train.py',
    ].join('\n');
    const { body, warnings } = await build([script('llama.sh', text)]);
    expect(body).toMatchObject({ name: 'llama-pretrain', gpus: 16, gpuType: 'h100', timeLimitSeconds: 2 * 86400, requeue: true, command: [] });
    expect(warnings).toEqual([
      `llama.sh:11: #SBATCH --output: ignored: Nuri keeps every job's output (stdout and stderr) itself; read it with "nuri logs <id>"`,
      'llama.sh:6: #SBATCH --cpus-per-task: ignored: Nuri schedules GPUs only; a job uses the CPUs of its node (a job on whole nodes has them to itself)',
      "llama.sh:7: #SBATCH --mem: ignored: Nuri takes no memory request; a node's operator may cap each job's memory per GPU it holds",
      'llama.sh:8: #SBATCH --exclusive: ignored: a job on whole 8-GPU nodes has them to itself',
      "llama.sh:12: #SBATCH --account: ignored: the tenant charged is your token's (nuri whoami)",
      'llama.sh:13: #SBATCH --mail-type: ignored: Nuri sends no mail; watch the job with nuri show or nuri logs -f',
      'llama.sh:13: #SBATCH --mail-user: ignored: Nuri sends no mail; watch the job with nuri show or nuri logs -f',
      'llama.sh:14: #SBATCH --signal: ignored: Nuri sends no early signal: at the time limit the job gets SIGTERM, then SIGKILL after a grace period',
      "llama.sh:14: #SBATCH --open-mode: ignored: Nuri keeps the output itself, and a later attempt's output follows the earlier one's (nuri logs)",
    ]);
  });

  it('takes -n/--ntasks only as the node count and --ntasks-per-node only as 1, refusing other counts with the torchrun hint', async () => {
    const cmd = (flags: Record<string, unknown>) => build(['true'], { time: '5', ...flags }, { commandMode: true });
    expect((await cmd({ nodes: '2', ntasks: '2', ntasksPerNode: '1' })).warnings).toEqual([]);
    expect((await cmd({ gpus: '4', ntasks: '1' })).body.gpus).toBe(4);
    expect((await build([script('n3.sh', '#!/bin/sh\n#SBATCH -N 3 -n 3 -t 5\n')])).body.gpus).toBe(24);
    expect(await refusal(cmd({ nodes: '2', ntasks: '16' }))).toBe(
      '--ntasks 16: Nuri runs the batch script once per node (one task per node); start one process per GPU with torchrun, so this job of 2 node(s) has 2 task(s)',
    );
    expect(await refusal(build([script('t8.sh', '#!/bin/sh\n#SBATCH -N 2 -t 5\n#SBATCH --ntasks-per-node=8\n')]))).toBe(
      't8.sh:3: #SBATCH --ntasks-per-node 8: Nuri runs the batch script once per node (one task per node); start one process per GPU with torchrun (--ntasks-per-node=1)',
    );
    expect(await refusal(cmd({ gpus: '1', ntasksPerNode: 'x' }))).toBe('--ntasks-per-node: "x" is not a whole number from 1 to 4096');
  });

  it('says a single-node job of fewer than 8 GPUs is not exclusive, from the command line too', async () => {
    const { warnings } = await build(['true'], { gpus: '2', time: '5', exclusive: true, cpusPerTask: '8', memPerGpu: '80G', account: 'nlp' }, { commandMode: true });
    expect(warnings).toEqual([
      '--cpus-per-task: ignored: Nuri schedules GPUs only; a job uses the CPUs of its node (a job on whole nodes has them to itself)',
      "--mem-per-gpu: ignored: Nuri takes no memory request; a node's operator may cap each job's memory per GPU it holds",
      "--exclusive: ignored: this job holds 2 of its node's 8 GPUs, and other jobs may run on the rest (ask for 8 GPUs to have the node to itself)",
      "--account: ignored: the tenant charged is your token's (nuri whoami)",
    ]);
    expect((await build([script('x.sh', '#!/bin/sh\n#SBATCH -G 8 -t 5 --exclusive=user\n')])).warnings).toEqual(['x.sh:2: #SBATCH --exclusive: ignored: a job on whole 8-GPU nodes has them to itself']);
  });

  it('resolves a relative working directory against the submit directory', async () => {
    const { body } = await build(['true'], { gpus: '1', time: '5', chdir: '.' }, { commandMode: true });
    expect(body.workingDir).toBe(dir);
    expect((await build(['true'], { gpus: '1', time: '5', workdir: '/data/run' }, { commandMode: true })).body.workingDir).toBe('/data/run');
  });

  it('finds directives only in the comment block at the top and splits them like a shell', () => {
    expect(directiveLines('#!/bin/sh\n\n# note\n#SBATCH -J a\n  # indented comment\n#NURI --env X=1\necho\n#SBATCH -J b\n')).toEqual([
      { line: 4, prefix: '#SBATCH', tokens: ['-J', 'a'] },
      { line: 6, prefix: '#NURI', tokens: ['--env', 'X=1'] },
    ]);
    expect(shellWords(`-J 'a b' --env="X=1 2" c\\ d # rest`)).toEqual(['-J', 'a b', '--env=X=1 2', 'c d']);
  });
});

describe('--export', () => {
  const env = { FOO: 'bar', PATH: '/usr/bin', NURI_TOKEN: 'secret', HOME: '/home/me', USER: 'me', CUDA_VISIBLE_DEVICES: '0', 'BAD-NAME': 'x', BIG: 'x'.repeat(9000) };
  it('ALL sends the environment without the token, the shell identity, reserved and invalid names', () => {
    const r = exportEnv('--export', 'ALL', env);
    expect(r.vars).toEqual({ FOO: 'bar', PATH: '/usr/bin' });
    expect(r.skipped.sort()).toEqual(['BAD-NAME', 'BIG', 'CUDA_VISIBLE_DEVICES']);
    expect(exportEnv('--export', 'ALL,FOO=override', env).vars.FOO).toBe('override');
  });
  it('NONE sends nothing; VAR takes the value from here; VAR=value is literal', () => {
    expect(exportEnv('--export', 'NONE', env).vars).toEqual({});
    expect(exportEnv('--export', 'FOO,LR=3e-4', env).vars).toEqual({ FOO: 'bar', LR: '3e-4' });
  });
  it('refuses what cannot or should not be sent, naming the rule', () => {
    expect(() => exportEnv('--export', 'MISSING', env)).toThrow('--export: MISSING is not set here (give MISSING=value to send a value)');
    expect(() => exportEnv('--export', 'MASTER_PORT=1', env)).toThrow(/^--export: MASTER_PORT is set by Nuri on the node/);
    expect(() => exportEnv('--export', 'NURI_TOKEN', env)).toThrow(/^--export: NURI_TOKEN is not sent/);
    expect(() => exportEnv('--export', '1X=2', env)).toThrow(/^--export: "1X" is not a variable name/);
    expect(() => exportEnv('--export', 'NONE,FOO', env)).toThrow(/NONE stands alone/);
  });
  it('reaches the request and says what ALL left out', async () => {
    const r = await build(['true'], { gpus: '1', time: '5', export: 'ALL' }, { commandMode: true, env });
    expect(r.body.env).toEqual({ FOO: 'bar', PATH: '/usr/bin' });
    expect(r.warnings).toEqual([expect.stringMatching(/^--export: not sent: .*CUDA_VISIBLE_DEVICES/)]);
  });
});

describe('states and tables', () => {
  it("takes Slurm's state codes, Nuri's names and lists", () => {
    expect(parseStates('--state', 'PD,R')).toEqual(['pending', 'running']);
    expect(parseStates('--state', 'cd,F,CA,TO,NF,node_failed')).toEqual(['completed', 'failed', 'cancelled', 'timeout', 'node_failed']);
    expect(() => parseStates('--state', 'XX')).toThrow(/^--state: "XX" is not a job state/);
  });
  it('lines columns up by display width with Hangul', () => {
    const lines = table([
      ['ID', 'NAME', 'STATE'],
      ['abcd1234', '한국어-학습', 'R'],
      ['ef567890', 'llama', 'PD'],
    ]);
    expect(width('한국어-학습')).toBe(11);
    const stateCol = lines.map((l) => width(l.slice(0, l.lastIndexOf(' ') + 1)));
    expect(new Set(stateCol).size).toBe(1);
    expect(lines[1]).toBe('abcd1234  한국어-학습  R');
  });
});

describe('refusals on the command line', () => {
  let server: Server;
  let requests = 0;
  let url: string;
  beforeAll(async () => {
    server = createServer((_req, res) => {
      requests++;
      res.writeHead(500).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const run = async (...argv: string[]) => {
    let err = '';
    const code = await runCli(argv, { stdout: () => undefined, stderr: (t) => (err += t), env: { NURI_URL: url, NURI_TOKEN: 't' }, cwd: dir });
    return { code, err };
  };

  it('exits 2 naming the flag and the rule, and sends nothing', async () => {
    const cases: [string[], RegExp][] = [
      [['submit', '-G', '1', '-t', 'soon', '--', 'true'], /^nuri: --time: "soon" is not a time limit/],
      [['submit', '-G', '3', '-N', '2', '-t', '5', '--', 'true'], /^nuri: --gpus 3: Nuri places multi-node jobs/],
      [['submit', '--', 'true'], /^nuri: say how many GPUs/],
      [['submit', '-G', '1', '-t', '5', '--array', 'x', '--', 'true'], /^nuri: --array: an array like 0-99/],
      [['submit', '-G', '1', '-t', '5', '--env', 'MASTER_ADDR=x', '--', 'true'], /^nuri: --env: MASTER_ADDR is set by Nuri on the node/],
      [['submit', '-G', '1', '-t', '5', '--constraint', 'x', '--', 'true'], /^nuri: unknown option '--constraint' \(see nuri submit --help\)/],
      [['submit', script('bad.sh', '#!/bin/sh\n#SBATCH --reservation=big\n')], /^nuri: bad\.sh:2: #SBATCH --reservation: not supported by Nuri/],
      [['submit', '-N', '2', '--ntasks-per-node', '8', '-t', '5', '--', 'true'], /^nuri: --ntasks-per-node 8: Nuri runs the batch script once per node/],
      [['jobs', '--state', 'XX'], /^nuri: --state: "XX" is not a job state/],
      [['jobs', '--limit', '0'], /^nuri: --limit: "0" is not a whole number from 1 to 500/],
      [['cancel'], /^nuri: say what to cancel/],
      [['cancel', '--state', 'CD'], /^nuri: --state: only live jobs can be cancelled/],
      [['logs', '--rank', 'x', 'abcdef12'], /^nuri: --rank: "x" is not a rank/],
      [['show'], /^nuri: missing required argument 'id' \(see nuri show --help\)/],
      [['completion', 'fish'], /^nuri: command-argument value 'fish' is invalid for argument 'shell'. Allowed choices are bash, zsh./],
    ];
    for (const [argv, message] of cases) {
      const r = await run(...argv);
      expect({ argv, code: r.code }).toEqual({ argv, code: 2 });
      expect(r.err).toMatch(message);
    }
    expect(requests).toBe(0);
  });

  it('needs a token only to talk to the server', async () => {
    let err = '';
    const code = await runCli(['jobs'], { stdout: () => undefined, stderr: (t) => (err += t), env: { NURI_URL: url }, cwd: dir });
    expect(code).toBe(2);
    expect(err).toMatch(/set NURI_TOKEN/);
  });
});
