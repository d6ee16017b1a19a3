/**
 * `nuri usage`, `nuri history` and `nuri quota` against a running demo center (real agents,
 * real job processes, the demo's seeded prices: H100 2.50 and H800 2.00 USD per GPU-hour).
 */
import { parseServerConfig } from '@nuri/config';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IdentityRepository } from '@nuri/db';
import { AuthService } from '../../server/src/auth/auth.service';
import { RunningServer, startServer } from '../../server/src/bootstrap';
import { runCli } from './program';

describe('nuri usage, history and quota', () => {
  let server: RunningServer;
  let dir: string;
  let env: Record<string, string>;
  let jobId = '';

  const cli = async (token: string, ...argv: string[]) => {
    let out = '';
    let err = '';
    const code = await runCli(argv, { stdout: (t) => (out += t.toString()), stderr: (t) => (err += t), env: { ...env, NURI_TOKEN: token }, cwd: dir });
    return { code, out: out.trimEnd(), err: err.trimEnd() };
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nuri-cli-acct-'));
    server = await startServer(
      parseServerConfig({ PORT: '0', HOST: '127.0.0.1', NURI_DATA_DIR: 'memory://', NURI_AGENT_WORK_DIR: dir, NURI_DEMO_NODES: '2', NURI_LOG_LEVEL: 'error', NURI_SCHEDULER_TICK_MS: '300' }),
    );
    env = { NURI_URL: server.url };
    const me = server.demo!.researcherToken;
    const sub = await cli(me, 'submit', '-G', '2', '-p', 'h100', '-t', '5', '-J', 'priced', '--', 'sh', '-c', 'sleep 1.5; exit 3');
    expect(sub.code).toBe(0);
    jobId = /^submitted (\S+)/.exec(sub.out)![1]!;
    for (let i = 0; i < 300; i++) {
      const shown = await cli(me, 'show', jobId, '--json');
      if (JSON.parse(shown.out).state === 'failed') break;
      await new Promise((r) => setTimeout(r, 100));
    }
  }, 60_000);
  afterAll(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('lists the finished job sacct-style with its exit code, GPU-hours and cost at the seeded price', async () => {
    const r = await cli(server.demo!.researcherToken, 'history', '--json');
    expect(r.code).toBe(0);
    const h = JSON.parse(r.out).find((x: any) => x.id === jobId);
    expect(h).toMatchObject({ name: 'priced', state: 'failed', exitCode: 3, gpus: 2, gpuType: 'h100', attempts: 1 });
    expect(h.gpuHours).toBeCloseTo((h.elapsedSeconds * 2) / 3600, 9);
    expect(h.cost).toBeCloseTo(h.gpuHours * 2.5, 9);
    const table = (await cli(server.demo!.researcherToken, 'history')).out.split('\n');
    expect(table[0]).toMatch(/^ID\s+NAME\s+USER\s+STATE\s+EXIT\s+END \(UTC\)\s+ELAPSED\s+GPUS\s+GPU-HOURS\s+COST\s+UTIL\s+TRIES$/);
    expect(table.find((l) => l.startsWith(jobId.slice(0, 8)))).toMatch(/priced\s+naver-researcher\s+failed\s+3\s.*2 h100\s+0\.00\s+\$0\.00\s+\S+\s+1$/);
  });

  it('reports usage by user as a table, CSV or JSON, and refuses a bad --by before sending anything', async () => {
    const adminUser = (await server.app.get(IdentityRepository).findUser('naver-admin'))!;
    const admin = (await server.app.get(AuthService).issueToken(adminUser.id, 'test', null)).token;
    const j = JSON.parse((await cli(admin, 'usage', '--by', 'user', '--json')).out);
    const row = j.rows.find((x: any) => x.user === 'naver-researcher');
    expect(row.gpuHours).toBeGreaterThan(0);
    expect(row.cost).toBeCloseTo(row.gpuHours * 2.5, 9);
    const t = (await cli(admin, 'usage')).out.split('\n');
    expect(t[1]).toMatch(/^USER\s+GPU-HOURS\s+COST\s+IDLE GPU-HOURS\s+IDLE COST\s+IDLE %$/);
    expect(t.some((l) => /^naver-researcher\s/.test(l))).toBe(true);
    expect(t[t.length - 1]).toMatch(/^TOTAL\s/);
    const csv = (await cli(admin, 'usage', '--by', 'user,month', '--csv')).out.split('\n');
    expect(csv[0]).toBe('user,month,gpuHours,costUsd,idleGpuHours,idleCostUsd');
    expect(csv.some((l) => l.startsWith(`naver-researcher,${new Date().toISOString().slice(0, 7)},`))).toBe(true);
    expect(await cli(admin, 'usage', '--by', 'colour')).toMatchObject({ code: 2, err: expect.stringContaining('--by: "colour"') });
    expect(await cli(admin, 'usage', '--from', '12/01/2026')).toMatchObject({ code: 2, err: expect.stringContaining('--from') });
    // The server's own refusal keeps its field: a researcher asking for a colleague is 403.
    expect(await cli(server.demo!.researcherToken, 'usage', '--user', 'naver-admin')).toMatchObject({ code: 1, err: expect.stringContaining('HTTP 403') });
  });

  it('shows what the tenant holds against its quota', async () => {
    const r = await cli(server.demo!.researcherToken, 'quota');
    expect(r.code).toBe(0);
    const lines = r.out.split('\n');
    expect(lines[0]).toMatch(/^Tenant naver; \d{4}-\d{2} so far: your own jobs, in USD$/);
    expect(lines[1]).toMatch(/^TYPE\s+HELD\s+GUARANTEED\s+LIMIT\s+BORROWED\s+MONTH GPU-HOURS\s+MONTH COST$/);
    expect(lines.find((l) => l.startsWith('h100'))).toMatch(/^h100\s+\d+\s+16\s+48\s+\d+\s+/);
  });
});
