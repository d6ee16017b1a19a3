import { parseServerConfig } from '@nuri/config';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RunningServer, startServer } from '../../server/src/bootstrap';
import { parseArgs, UsageError } from './args';
import { ApiError, NuriClient } from './client';
import { humanDuration, parseDuration, run } from './commands';

describe('argument handling', () => {
  it('keeps the job argv after -- untouched', () => {
    const a = parseArgs(['--gpus', '2', '--env', 'A=1', '--env=B=2', '--json', '--', 'python', '--lr', '3e-4'], ['json']);
    expect(a.flags.get('env')).toEqual(['A=1', 'B=2']);
    expect(a.flags.get('json')).toEqual(['true']);
    expect(a.rest).toEqual(['python', '--lr', '3e-4']);
  });
  it('reads durations and refuses nonsense', () => {
    expect(parseDuration('90')).toBe(90);
    expect(parseDuration('30m')).toBe(1800);
    expect(parseDuration('2d')).toBe(172800);
    expect(() => parseDuration('soon')).toThrow(UsageError);
    expect(humanDuration(3725)).toBe('1h 2m');
  });
});

describe('the nuri CLI against a running center', () => {
  let server: RunningServer;
  let dir: string;
  let client: NuriClient;
  const lines: string[] = [];
  const cli = async (...argv: string[]) => {
    lines.length = 0;
    const [command, ...rest] = argv;
    await run(client, command!, parseArgs(rest, ['json', 'no-requeue']), (l) => lines.push(l));
    return lines.join('\n');
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nuri-cli-'));
    server = await startServer(
      parseServerConfig({ PORT: '0', HOST: '127.0.0.1', NURI_DATA_DIR: 'memory://', NURI_AGENT_WORK_DIR: dir, NURI_DEMO_NODES: '2', NURI_LOG_LEVEL: 'error' }),
    );
    client = new NuriClient(server.url, server.demo!.researcherToken);
  });
  afterAll(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('lets an operator list, disable and enable users; a disabled user\'s token is refused with the API\'s message', async () => {
    const researcher = client;
    try {
      client = new NuriClient(server.url, server.demo!.operatorToken);
      expect(await cli('users', '--tenant', 'naver')).toMatch(/^naver-researcher\s+naver\s+researcher\s+enabled$/m);
      expect(await cli('users', 'disable', 'naver-researcher')).toMatch(/^disabled naver-researcher \(since .*\): every token of theirs is refused$/);
      expect(await cli('users')).toMatch(/^naver-researcher\s+naver\s+researcher\s+disabled since /m);
      await expect(run(researcher, 'whoami', parseArgs([]), () => undefined)).rejects.toThrow(/disabled/);
      await expect(cli('users', 'frobnicate', 'x')).rejects.toThrow(UsageError);
      await expect(cli('users', 'disable', 'nobody')).rejects.toThrow(ApiError);
      expect(await cli('users', 'enable', 'naver-researcher')).toBe('enabled naver-researcher: their unexpired, unrevoked tokens work again');
    } finally {
      client = researcher;
    }
    expect(await cli('whoami')).toBe('naver-researcher (researcher in naver)');
  });

  it('submits, lists, shows and cancels a job', async () => {
    expect(await cli('whoami')).toBe('naver-researcher (researcher in naver)');
    const submitted = await cli('submit', '--name', 'cli-job', '--gpus', '1', '--type', 'h100', '--time', '10m', '--', 'sleep', '30');
    const id = /submitted (\S+)/.exec(submitted)![1]!;
    for (let i = 0; i < 100 && !(await cli('show', id)).includes('state:     running'); i++) await new Promise((r) => setTimeout(r, 100));
    const shown = await cli('show', id);
    expect(shown).toContain('state:     running');
    expect(shown).toMatch(/placed on: h100-01 GPUs \d/);
    expect(shown).toContain('time limit 10m');
    expect(await cli('jobs', '--state', 'running')).toContain(id.slice(0, 8));
    expect(await cli('cancel', id)).toMatch(/^stopping /);
    expect(await cli('nodes')).toMatch(/h100-01\s+h100\s+up/);
  });

  it('shows a pending job its place in the queue, its reason and since when it waits', async () => {
    const ids: string[] = [];
    for (const name of ['first', 'second']) {
      const out = await cli('submit', '--name', name, '--gpus', '8', '--type', 'h100', '--time', '10m', '--', 'sleep', '30');
      ids.push(/submitted (\S+)/.exec(out)![1]!);
    }
    for (let i = 0; i < 100 && !(await cli('show', ids[0]!)).includes('state:     running'); i++) await new Promise((r) => setTimeout(r, 100));
    for (let i = 0; i < 100 && !(await cli('show', ids[1]!)).includes('queue:'); i++) await new Promise((r) => setTimeout(r, 100));
    const shown = await cli('show', ids[1]!);
    expect(shown).toMatch(/state: {5}pending — \S/);
    expect(shown).toContain('queue:     position 1');
    expect(shown).toMatch(/waiting: {3}since \d+s ago\n/);
    expect(shown).not.toContain('(requeued)');
    for (const id of ids) await cli('cancel', id);
  });

  it('passes the API field and rule through on bad input', async () => {
    const err = await cli('submit', '--gpus', '12', '--time', '1h', '--', 'true').catch((e) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).body.issues).toEqual([expect.objectContaining({ field: 'gpus' })]);
  });
});
