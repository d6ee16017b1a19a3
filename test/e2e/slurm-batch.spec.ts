import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_PATH } from '../../apps/agent/src/runner';
import { runCli } from '../../apps/cli/src/program';
import type { RunningServer } from '../../apps/server/src/bootstrap';
import { startCenter, type TestCenter } from '../support/center';
import { apiClient, until } from '../support/http';

/**
 * Node names are host names on a real cluster, and batch files rely on it: the first one is
 * MASTER_ADDR. Here rank 0 (names in code-point order) is `localhost`, which resolves
 * everywhere; rank 1's name is never resolved.
 */
const NODES = ['localhost', 'node-b'];

/**
 * A Slurm batch file for multi-node training, as researchers have it, run on Nuri unchanged
 * through the nuri CLI: two agents with real processes, the real server on PostgreSQL.
 * PyTorch is not installed here, so `torchrun` is a stand-in on the job's PATH that does
 * what its c10d rendezvous does at --rdzv_endpoint: rank 0 listens, rank 1 connects, they
 * tell each other their ranks.
 */
const batchFile = (masterPort: string | undefined) =>
  [
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
    '',
    'export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
    ...(masterPort ? [`export MASTER_PORT=${masterPort}`] : []),
    'srun --kill-on-bad-exit=1 torchrun --nnodes "$SLURM_NNODES" --nproc_per_node 8 \\',
    '  --node_rank "$SLURM_NODEID" --rdzv_id "$SLURM_JOB_ID" --rdzv_backend c10d \\',
    '  --rdzv_endpoint "$MASTER_ADDR:$MASTER_PORT" train.py --config cfg.yaml',
    '',
  ].join('\n');

const TORCHRUN = `#!/usr/bin/env python3
# Stands in for torchrun (no PyTorch here): its c10d rendezvous at --rdzv_endpoint, reduced to
# rank 0 listening and every other node connecting, each telling the other its rank.
import argparse, os, socket, sys, time
p = argparse.ArgumentParser()
p.add_argument('--nnodes', type=int, required=True)
p.add_argument('--nproc_per_node', type=int, default=1)
p.add_argument('--node_rank', type=int, default=int(os.environ.get('NODE_RANK', '0')))
p.add_argument('--rdzv_id')
p.add_argument('--rdzv_backend')
p.add_argument('--rdzv_endpoint', default=os.environ.get('MASTER_ADDR', '') + ':' + os.environ.get('MASTER_PORT', ''))
p.add_argument('script')
p.add_argument('script_args', nargs=argparse.REMAINDER)
a = p.parse_args()
host, port = a.rdzv_endpoint.rsplit(':', 1)
port = int(port)
print(f'node_rank={a.node_rank} nnodes={a.nnodes} nproc_per_node={a.nproc_per_node} rdzv_id={a.rdzv_id} endpoint={host}:{port} script={a.script} {a.script_args}', flush=True)
deadline = time.time() + 90
if a.node_rank == 0:
    # The c10d store listens on every address, as torch's does.
    try:
        srv = socket.create_server(('', port), family=socket.AF_INET6, dualstack_ipv6=True)
    except (OSError, ValueError):
        srv = socket.create_server(('', port))
    srv.settimeout(90)
    for _ in range(a.nnodes - 1):
        c, _ = srv.accept()
        with c:
            peer = c.makefile().readline().strip()
            c.sendall(b'rank 0\\n')
        print(f'rank 0 exchanged ranks with {peer}', flush=True)
else:
    while True:
        try:
            c = socket.create_connection((host, port), timeout=10)
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)
    with c:
        c.sendall(f'rank {a.node_rank}\\n'.encode())
        peer = c.makefile().readline().strip()
    print(f'rank {a.node_rank} exchanged ranks with {peer}', flush=True)
`;

const WARNED = [
  'llama.sh:6: #SBATCH --cpus-per-task: ignored:',
  'llama.sh:7: #SBATCH --mem: ignored:',
  'llama.sh:8: #SBATCH --exclusive: ignored: a job on whole 8-GPU nodes has them to itself',
  'llama.sh:11: #SBATCH --output: ignored:',
  "llama.sh:12: #SBATCH --account: ignored: the tenant charged is your token's",
];

describe('a Slurm batch file for multi-node PyTorch, submitted with nuri unchanged', () => {
  let c: TestCenter;
  let server: RunningServer;
  let researcher: string;
  let scratch: string;
  let project: string;
  const api = apiClient(() => server.url);

  const cli = async (cwd: string, ...argv: string[]) => {
    let out = '';
    let err = '';
    const code = await runCli(argv, { stdout: (t) => (out += t.toString()), stderr: (t) => (err += t), env: { NURI_URL: server.url, NURI_TOKEN: researcher }, cwd });
    return { code, out, err };
  };
  const ended = (id: string) =>
    until(`job ${id} to end`, async () => {
      const j = (await api(researcher, 'GET', `/v1/jobs/${id}`)).body;
      return !['pending', 'running'].includes(j.state) && j;
    }, 90_000);
  /** Submits the batch file through the CLI; the job once ended, and what submit said on stderr. */
  const submitAndWait = async (cwd: string, argv: string[]) => {
    const r = await cli(cwd, 'submit', ...argv);
    expect({ code: r.code, err: r.err }).toMatchObject({ code: 0 });
    const short = /^submitted (\S+) \(llama-pretrain\)/.exec(r.out)?.[1];
    expect(short, r.out).toBeDefined();
    const full = (await api(researcher, 'GET', `/v1/jobs/${short}`)).body;
    return { short: short!, job: await ended(full.id), err: r.err };
  };
  const logs = async (rank: number, id: string) => {
    const r = await cli(project, 'logs', '--rank', String(rank), id);
    expect({ code: r.code, err: r.err }).toEqual({ code: 0, err: '' });
    return r.out;
  };

  beforeAll(async () => {
    c = await startCenter({
      name: 'slurm-batch',
      vars: { NURI_SCHEDULER_TICK_MS: '300', NURI_TIMEOUT_GRACE_SECONDS: '2' },
      tenants: [{ name: 'naver', user: 'jun', guaranteed: 16, limit: 16 }],
      nodes: NODES,
      agent: { address: '127.0.0.1', graceSeconds: 1 },
    });
    ({ server, work: scratch } = c);
    researcher = c.tokens.jun!;
    chmodSync(scratch, 0o755);
    // The researcher's project: the batch file, train.py, and torchrun (the stand-in) on the PATH it exports.
    project = join(scratch, 'project');
    mkdirSync(join(project, 'bin'), { recursive: true });
    writeFileSync(join(project, 'bin', 'torchrun'), TORCHRUN, { mode: 0o755 });
    writeFileSync(join(project, 'train.py'), 'raise SystemExit("the stand-in torchrun does not run it")\n');
  }, 60_000);
  afterAll(async () => {
    await c?.stop();
  });

  it("runs on both nodes with Nuri's MASTER_PORT: the ranks meet at the first host name, the job completes, nuri logs shows each rank, submit warned (not refused)", async () => {
    writeFileSync(join(project, 'llama.sh'), batchFile(undefined));
    const { short, job, err } = await submitAndWait(project, ['-D', '.', '--export', `PATH=${project}/bin:${DEFAULT_PATH}`, 'llama.sh']);
    for (const w of WARNED) expect(err).toContain(`nuri: warning: ${w}`);
    expect(err).not.toMatch(/not supported/);
    expect(job, JSON.stringify(job)).toMatchObject({ state: 'completed', exitCode: 0, name: 'llama-pretrain', gpus: 16, timeLimitSeconds: 2 * 86400 });
    expect(job.placement.map((p: { node: string }) => p.node)).toEqual(NODES);
    const port = (await c.db.handle.db.selectFrom('jobs').select('master_port').where('id', '=', job.id).executeTakeFirstOrThrow()).master_port;
    for (const rank of [0, 1])
      expect(await logs(rank, short)).toContain(
        `node_rank=${rank} nnodes=2 nproc_per_node=8 rdzv_id=${job.id} endpoint=localhost:${port} script=train.py ['--config', 'cfg.yaml']\n`,
      );
    expect(await logs(0, short)).toContain('rank 0 exchanged ranks with rank 1\n');
    expect(await logs(1, short)).toContain('rank 1 exchanged ranks with rank 0\n');
  }, 150_000);

  it('works the same when the script exports its own MASTER_PORT (submitted from elsewhere with --chdir)', async () => {
    // A port free now; Slurm scripts hard-code one (29500), which two jobs with rank 0 on one node would both take.
    const free = await new Promise<number>((resolve) => {
      const s = createServer();
      s.listen(0, () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    writeFileSync(join(project, 'own-port.sh'), batchFile(String(free)));
    const { short, job, err } = await submitAndWait(scratch, ['--chdir', project, '--export', `PATH=${project}/bin:${DEFAULT_PATH}`, 'project/own-port.sh']);
    expect(err).toContain('nuri: warning: project/own-port.sh:8: #SBATCH --exclusive: ignored');
    expect(job, JSON.stringify(job)).toMatchObject({ state: 'completed', exitCode: 0 });
    expect(await logs(1, short)).toContain(`endpoint=localhost:${free} `);
    expect(await logs(0, short)).toContain('rank 0 exchanged ranks with rank 1\n');
    expect(await logs(1, short)).toContain('rank 1 exchanged ranks with rank 0\n');
  }, 150_000);
});
