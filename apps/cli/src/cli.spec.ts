import { parseServerConfig } from '@nuri/config';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RunningServer, startServer } from '../../server/src/bootstrap';
import type { JobView } from '@nuri/contracts';
import { REASON_LABEL, width } from './format';
import { runCli } from './program';
import { buildCli } from './testing';

describe('the nuri CLI against a running center', () => {
  let server: RunningServer;
  let dir: string;
  let token: string;
  let url: string;

  const cli = async (...argv: string[]) => {
    let out = '';
    let err = '';
    const code = await runCli(argv, {
      stdout: (t) => (out += t.toString()),
      stderr: (t) => (err += t),
      env: { NURI_URL: url, NURI_TOKEN: token },
      cwd: dir,
    });
    return { code, out: out.trimEnd(), err: err.trimEnd() };
  };
  /** Runs a command that must succeed; its stdout. */
  const ok = async (...argv: string[]) => {
    const r = await cli(...argv);
    expect({ argv, code: r.code, err: r.err }).toMatchObject({ argv, code: 0 });
    return r.out;
  };
  const idOf = (submitted: string) => /^submitted (?:array )?(\S+)/.exec(submitted)![1]!;
  /** Polls `nuri show` until it matches (a generous deadline: the machine may be loaded). */
  const until = async (id: string, pattern: RegExp) => {
    const deadline = Date.now() + 30_000;
    let shown = '';
    while (Date.now() < deadline) {
      shown = await ok('show', id);
      if (pattern.test(shown)) return shown;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`nuri show ${id} never matched ${pattern}:\n${shown}`);
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nuri-cli-'));
    server = await startServer(
      parseServerConfig({ PORT: '0', HOST: '127.0.0.1', NURI_DATA_DIR: 'memory://', NURI_AGENT_WORK_DIR: dir, NURI_DEMO_NODES: '2', NURI_LOG_LEVEL: 'error' }),
    );
    token = server.demo!.researcherToken;
    url = server.url;
  });
  afterAll(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("lets an operator list, disable and enable users; a disabled user's token is refused with the API's message", async () => {
    const researcher = token;
    try {
      token = server.demo!.operatorToken;
      expect(await ok('users', '--tenant', 'naver')).toMatch(/^naver-researcher\s+naver\s+researcher\s+enabled$/m);
      expect(await ok('users', 'disable', 'naver-researcher')).toMatch(/^disabled naver-researcher \(since .*\): every token of theirs is refused$/);
      expect(await ok('users')).toMatch(/^naver-researcher\s+naver\s+researcher\s+disabled since /m);
      token = researcher;
      expect(await cli('whoami')).toMatchObject({ code: 1, err: expect.stringMatching(/disabled.*\(HTTP 401\)/) });
      token = server.demo!.operatorToken;
      expect(await cli('users', 'frobnicate', 'x')).toMatchObject({ code: 2 });
      expect(await cli('users', 'disable', 'nobody')).toMatchObject({ code: 1, err: expect.stringMatching(/HTTP 404/) });
      expect(await ok('users', 'enable', 'naver-researcher')).toBe('enabled naver-researcher: their unexpired, unrevoked tokens work again');
    } finally {
      token = researcher;
    }
    expect(await ok('whoami')).toBe('naver-researcher (researcher in naver)');
  });

  it('takes NURI_URL with or without /v1 and a trailing slash', async () => {
    const root = url;
    try {
      for (const u of [`${root}/v1`, `${root}/v1/`, `${root}/`]) {
        url = u;
        expect(await ok('whoami')).toBe('naver-researcher (researcher in naver)');
      }
    } finally {
      url = root;
    }
  });

  it('submits a batch script with its directives; show says where the output is and logs prints it by the 8-character id', async () => {
    writeFileSync(join(dir, 'hello.sh'), '#!/bin/sh\n#SBATCH -J 인사\n#SBATCH -G 1\n#SBATCH -p h100\n#SBATCH -t 5:00\necho "hello $1 from $NURI_JOB_ID"\n');
    const submitted = await ok('submit', 'hello.sh', 'world');
    expect(submitted).toMatch(/^submitted [0-9a-f-]{36} \(인사\): pending$/);
    const id = idOf(submitted);
    const short = id.slice(0, 8);
    const shown = await until(short, /state: {5}completed/);
    expect(shown).toContain('command:   batch script with arguments ["world"]');
    expect(shown).toContain('asks for:  1 × h100 GPU, normal priority, time limit 5m');
    expect(shown).toMatch(/output: {4}\(stdout and stderr, kept on the node by its agent\)\n {4}rank 0 on h100-01: \/\S+/);
    expect(shown).toContain(`read it:   nuri logs ${short}`);
    expect(await ok('logs', short)).toBe(`hello world from ${id}`);
    expect(await ok('logs', '--tail', '1', id.slice(0, 6))).toBe(`hello world from ${id}`);
  });

  it('follows a running job\'s output until it ends', async () => {
    const id = idOf(await ok('submit', '-G', '1', '-t', '5', '-J', 'follow-me', '--', 'sh', '-c', 'for i in 1 2 3; do echo line $i; sleep 0.5; done'));
    await until(id, /state: {5}(running|completed)/);
    expect(await ok('logs', '-f', id.slice(0, 8))).toBe('line 1\nline 2\nline 3');
    expect(await ok('show', id)).toMatch(/state: {5}completed/);
  });

  it('follows a job that is still pending: waits for it to start, then streams its output', async () => {
    const blocker = idOf(await ok('submit', '-G', '1', '-t', '5', '-J', 'blocker', '--', 'sleep', '2'));
    const id = idOf(await ok('submit', '-G', '1', '-t', '5', '-J', 'waits', '-d', `afterok:${blocker.slice(0, 8)}`, '--', 'sh', '-c', 'echo after the wait'));
    const r = await cli('logs', '-f', id.slice(0, 8));
    expect(r).toMatchObject({ code: 0, out: 'after the wait' });
    expect(r.err).toMatch(new RegExp(`^nuri: job ${id.slice(0, 8)} is pending \\(waiting for job ${blocker.slice(0, 8)} \\(afterok\\)\\); its output follows once it starts`));
  });

  it('ends logs -f cleanly on Ctrl-C (the built binary, exit 130, nothing on stderr)', async () => {
    const id = idOf(await ok('submit', '-G', '1', '-t', '5', '-J', 'interrupt-me', '--', 'sh', '-c', 'echo started; sleep 60'));
    const built = buildCli();
    try {
      const child = spawn(process.execPath, [built.main, 'logs', '-f', id.slice(0, 8)], { env: { PATH: process.env.PATH, NURI_URL: url, NURI_TOKEN: token } });
      let out = '';
      let err = '';
      child.stderr.on('data', (d) => (err += d));
      const exited = new Promise<number | null>((done) => child.on('exit', (code) => done(code)));
      await new Promise<void>((started, failed) => {
        const timer = setTimeout(() => failed(new Error(`no output from logs -f in 30 s (stderr: ${err})`)), 30_000);
        child.stdout.on('data', (d) => {
          out += d;
          if (out.includes('started')) {
            clearTimeout(timer);
            started();
          }
        });
      });
      child.kill('SIGINT');
      expect(await exited).toBe(130);
      expect(out).toBe('started\n');
      expect(err).toBe('');
    } finally {
      built.remove();
      await ok('cancel', id);
    }
  });

  it('lists active jobs by default with elapsed time and time left, Slurm state codes, and columns aligned with Hangul names', async () => {
    const a = idOf(await ok('submit', '-G', '1', '-p', 'h100', '-t', '1:00:00', '-J', '한국어-학습', '--', 'sleep', '60'));
    const b = idOf(await ok('submit', '-G', '8', '-p', 'h100', '-t', '30', '-J', 'wide-wait', '--', 'sleep', '60'));
    await until(a, /state: {5}running/);
    const listing = await ok('jobs');
    const lines = listing.split('\n');
    expect(lines[0]).toMatch(/^ID\s+NAME\s+USER\s+STATE\s+GPUS\s+TYPE\s+ELAPSED\s+TIME LEFT\s+NODES \/ REASON$/);
    const rowA = lines.find((l) => l.startsWith(a.slice(0, 8)))!;
    const rowB = lines.find((l) => l.startsWith(b.slice(0, 8)))!;
    expect(rowA).toMatch(/한국어-학습\s+naver-researcher\s+R\s+1\s+h100\s+0:\d\d\s+(59:\d\d|1:00:00)\s+h100-01$/);
    expect(rowB).toMatch(/wide-wait\s+naver-researcher\s+PD\s+8\s+h100\s+-\s+30:00\s+#1/);
    // The reason column shows the code the API gives, as a word in the manner of squeue's.
    const view = JSON.parse(await ok('show', '--json', b.slice(0, 8))) as JobView;
    expect(view.reasonCode).not.toBeNull();
    expect(rowB).toContain(`(${REASON_LABEL[view.reasonCode!]})`);
    expect(await ok('show', b.slice(0, 8))).toContain(`state:     pending (${REASON_LABEL[view.reasonCode!]}) — ${view.reason}`);
    // Every column starts at the same display column, whatever the width of the characters before it.
    const starts = (line: string) => [...line.matchAll(/\S+(?: \S+)*/g)].map((m) => width(line.slice(0, m.index)));
    expect(starts(rowA)).toEqual(starts(lines[0]!));
    expect(starts(rowB).slice(0, 9)).toEqual(starts(lines[0]!).slice(0, 9));
    expect(await ok('jobs', '--state', 'R')).toContain(a.slice(0, 8));
    expect(await ok('jobs', '-t', 'PD')).not.toContain(a.slice(0, 8));
    expect(await ok('jobs', '--state', 'pending,R', '--name', 'wide-wait')).toContain(b.slice(0, 8));
    expect(await ok('cancel', b.slice(0, 8))).toBe(`cancelled 1 pending job\n  ${b.slice(0, 8)}`);
    expect(await ok('cancel', a.slice(0, 6))).toBe(`stopping 1 running job (SIGTERM, then SIGKILL after the grace period)\n  ${a.slice(0, 8)}`);
    await until(a, /state: {5}cancelled/);
    expect(await ok('jobs')).not.toContain(a.slice(0, 8));
    expect(await ok('jobs', '--all', '--name', '한국어-학습')).toMatch(new RegExp(`^${a.slice(0, 8)}\\s+한국어-학습\\s+naver-researcher\\s+CA\\s`, 'm'));
    expect(await ok('cancel', a.slice(0, 8))).toBe(`already ended: ${a.slice(0, 8)} (cancelled)`);
  });

  it('says where the next page is', async () => {
    const r = await cli('jobs', '--all', '--limit', '1');
    expect(r.code).toBe(0);
    expect(r.out.split('\n')).toHaveLength(2);
    const m = /^more: nuri jobs --all --limit 1 --after (\S+)$/.exec(r.err);
    expect(m).not.toBeNull();
    const next = await cli('jobs', '--all', '--limit', '1', '--after', m![1]!);
    expect(next.out.split('\n')[1]).not.toBe(r.out.split('\n')[1]);
  });

  it('cancels by name and state with a count, and shows every held GPU as allocated', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push(idOf(await ok('submit', '-G', '4', '-p', 'h800', '-t', '10', '-J', 'bulk', '--', 'sleep', '60')));
    await until(ids[0]!, /state: {5}running/);
    const nodes = await ok('nodes');
    expect(nodes).toMatch(/^NODE\s+TYPE\s+STATE\s+FREE\s+ALLOCATED\s+UNHEALTHY\s+LEAF\s+YOUR JOBS$/m);
    expect(nodes).toMatch(new RegExp(`^h800-01\\s+h800\\s+up\\s+0/8\\s+8\\s+0\\s+\\S+\\s+.*${ids[0]!.slice(0, 8)}`, 'm'));
    const pending = await ok('cancel', '--name', 'bulk', '--state', 'PD');
    expect(pending).toMatch(/^cancelled 1 pending job\n/);
    const rest = await ok('cancel', '--name', 'bulk');
    expect(rest).toMatch(/^stopping 2 running jobs \(SIGTERM, then SIGKILL after the grace period\)\n/);
    expect(await ok('cancel', '--name', 'bulk', '--state', 'PD')).toBe('nothing to cancel: no pending or running job matched');
    const json = JSON.parse(await ok('cancel', '--name', 'no-such-name', '--json'));
    expect(json).toEqual({ cancelled: [], stopping: [] });
  });

  it('submits an array, lists it as one row (-r: one per task), cancels one task by <array>_<index> and the rest by the array id', async () => {
    const submitted = await ok('submit', '--array', '0-3%1', '-G', '1', '-p', 'h800', '-t', '10', '-J', 'sweep', '--', 'sleep', '60');
    expect(submitted).toMatch(/^submitted array [0-9a-f-]{36} \(sweep\): 4 tasks, at most 1 at once; tasks are [0-9a-f]{8}_<index>$/);
    const arr = idOf(submitted).slice(0, 8);
    await until(arr, /state: {5}running/);
    const grouped = (await ok('jobs', '--name', 'sweep')).split('\n');
    expect(grouped).toHaveLength(2);
    expect(grouped[1]).toMatch(new RegExp(`^${arr}\\s+sweep\\s+naver-researcher\\s+1 R, 3 PD\\s+1\\s+h800\\s+-\\s+-\\s+array of 4, at most 1 at once`));
    const expanded = await ok('jobs', '--name', 'sweep', '-r');
    for (const i of [0, 1, 2, 3]) expect(expanded).toMatch(new RegExp(`^${arr}_${i}\\s+sweep`, 'm'));
    expect(await ok('show', `${arr}_2`)).toMatch(/array: {5}task 2 of array [0-9a-f-]{36} \(4 tasks, at most 1 at once\)/);
    expect(await ok('cancel', `${arr}_3`)).toMatch(/^cancelled 1 pending job\n/);
    expect(await ok('cancel', arr)).toMatch(/^cancelled 2 pending jobs; stopping 1 running job/);
  });

  it('shows what a job waits for, and gives operators a TENANT column', async () => {
    const first = idOf(await ok('submit', '-G', '1', '-p', 'h100', '-t', '10', '-J', 'dep-first', '--', 'sleep', '60'));
    const then = idOf(await ok('submit', '-G', '1', '-p', 'h100', '-t', '10', '-J', 'dep-then', '-d', `afterok:${first.slice(0, 8)}`, '--', 'true'));
    const shown = await until(then, new RegExp(`after: {5}afterok ${first} \\((pending|running)\\) — not met yet`));
    expect(shown).toMatch(/state: {5}pending( \(Dependency\))? — /);
    const researcher = token;
    try {
      token = server.demo!.operatorToken;
      const listing = (await ok('jobs', '--tenant', 'naver', '--name', 'dep-then')).split('\n');
      expect(listing[0]).toMatch(/^ID\s+NAME\s+USER\s+TENANT\s+STATE\s/);
      expect(listing[1]).toMatch(new RegExp(`^${then.slice(0, 8)}\\s+dep-then\\s+naver-researcher\\s+naver\\s+PD\\s`));
    } finally {
      token = researcher;
    }
    expect(await ok('cancel', '-n', 'dep-first')).toMatch(/^(cancelled 1 pending job|stopping 1 running job)/);
    await until(then, /state: {5}cancelled/);
  });

  it("passes the server's refusals through with the field and rule, and exits 1", async () => {
    const missing = await cli('show', 'ffffff');
    expect(missing).toMatchObject({ code: 1, err: expect.stringMatching(/\(HTTP 404\)/) });
    const bad = await cli('submit', '-G', '1', '-t', '5', '-D', 'x', '--env', 'A=\u0000', '--', 'true');
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/HTTP 400\)\n {2}env\.A: /);
  });
});
