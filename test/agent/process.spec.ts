import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentGateway } from '../../apps/server/src/gateway/transport';
import { FakeFleet } from './fake-fleet';

const repoRoot = resolve(__dirname, '../..');
const main = join(repoRoot, 'dist/apps/agent/src/main.js');

/** The real agent binary, SIGKILLed with a job's exit unacknowledged, then started again. */
describe('nuri-agent as a process', () => {
  const procs: ChildProcess[] = [];
  let gw: AgentGateway;
  const fleet = new FakeFleet({ 'proc-node': 'tok' });

  beforeAll(async () => {
    // Compile just the agent and the contracts it imports (swc, about a second).
    execFileSync(join(repoRoot, 'node_modules/.bin/swc'), ['apps/agent', 'libs/contracts', '-d', 'dist', '-q', '--copy-files'], { cwd: repoRoot, stdio: 'ignore' });
    gw = new AgentGateway({ fleet, port: 0, heartbeatSeconds: 1 });
    await gw.start();
  });
  afterAll(async () => {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
    await gw.stop();
  });

  const run = (workDir: string) => {
    const p = spawn(process.execPath, [main], {
      env: {
        PATH: process.env.PATH,
        NURI_GATEWAY_URL: `ws://127.0.0.1:${gw.port}/agent`,
        NURI_NODE_NAME: 'proc-node',
        NURI_NODE_TOKEN: 'tok',
        NURI_COLLECTOR: 'simulated',
        NURI_WORK_DIR: workDir,
        NURI_SAMPLE_INTERVAL_SECONDS: '0.1',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    procs.push(p);
    return p;
  };

  it('resends a journaled exit after SIGKILL and restart', async () => {
    expect(existsSync(main)).toBe(true);
    const workDir = mkdtempSync(join(tmpdir(), 'nuri-proc-'));
    const p1 = run(workDir);
    await fleet.until(() => gw.isConnected('proc-node'), 10_000, 'first connect');
    fleet.failApply = (m) => m.type === 'job_event' && m.event.kind === 'exited';
    gw.send('proc-node', { v: 1, type: 'start', jobId: 'j-killed', command: ['sh', '-c', 'exit 5'], env: {}, workingDir: null, gpuIndices: [0], timeLimitSeconds: 10, graceSeconds: 1 });
    const journal = join(workDir, 'journal.jsonl');
    await fleet.until(() => existsSync(journal) && readFileSync(journal, 'utf8').includes('"exited"'), 5000, 'exit journaled');
    p1.kill('SIGKILL');
    await new Promise((r) => p1.once('exit', r));
    expect(fleet.exit('proc-node', 'j-killed')).toBeUndefined();
    fleet.failApply = undefined;
    run(workDir);
    await fleet.until(() => fleet.exit('proc-node', 'j-killed') !== undefined, 10_000, 'exit after restart');
    expect(fleet.exit('proc-node', 'j-killed')).toMatchObject({ exitCode: 5, cause: 'exit' });
    const streams = new Set(fleet.hellos.map((h) => h.hello.stream));
    expect(streams.size).toBeGreaterThanOrEqual(2);
  });
});
