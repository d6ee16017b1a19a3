import { colorsWanted, logFields, parseServerConfig } from '@nuri/config';
import { migrateToLatest, openDatabase } from '@nuri/db';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startServer } from './bootstrap';
import { NuriLogger } from './logging';

const JOB = '0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a';

/** What the code under test writes to stdout, line by line. */
function captureStdout(): { lines: () => string[] } {
  const chunks: string[] = [];
  vi.spyOn(process.stdout, 'write').mockImplementation(((chunk: string | Uint8Array) => {
    chunks.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    return true;
  }) as typeof process.stdout.write);
  return { lines: () => chunks.join('').split('\n').filter(Boolean) };
}

afterEach(() => vi.restoreAllMocks());

describe('NURI_LOG_FORMAT', () => {
  it('json: one JSON object a line, with the job and node the message names as fields', () => {
    const out = captureStdout();
    const log = new NuriLogger('json', ['log', 'warn', 'error']);
    log.log(`job ${JOB} cancelled: its dependency failed`, 'SchedulerService');
    log.warn('node gpu-node-07 GPU 3 unhealthy: XID 79', 'FleetService');
    log.log('pass took 12 ms', { startedJobs: 4 }, 'SchedulerService');
    log.debug('not at this level');
    const lines = out.lines();
    expect(lines, lines.join('\n')).toHaveLength(3);
    const [a, b, c] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(a).toMatchObject({ level: 'log', context: 'SchedulerService', message: `job ${JOB} cancelled: its dependency failed`, job: JOB });
    expect(a!.node).toBeUndefined();
    expect(b).toMatchObject({ level: 'warn', context: 'FleetService', node: 'gpu-node-07' });
    expect(c).toMatchObject({ message: 'pass took 12 ms', context: 'SchedulerService', startedJobs: 4 });
    expect(typeof a!.timestamp).toBe('number');
    expect(lines.join('')).not.toContain('\u001b[');
  });

  it('text: no colour codes unless asked (the server asks only when stdout is a terminal)', () => {
    const out = captureStdout();
    new NuriLogger('text', ['log'], false).log(`job ${JOB} started`, 'X');
    new NuriLogger('text', ['log'], true).log('coloured', 'X');
    const [plain, coloured] = out.lines();
    expect(plain).toContain(`job ${JOB} started`);
    expect(plain).not.toContain('\u001b[');
    expect(coloured).toContain('\u001b[');
    expect(colorsWanted({ isTTY: false }, {})).toBe(false);
    expect(colorsWanted({ isTTY: undefined }, {})).toBe(false);
    expect(colorsWanted({ isTTY: true }, {})).toBe(true);
    expect(colorsWanted({ isTTY: true }, { NO_COLOR: '1' })).toBe(false);
  });

  it('finds job ids and node names the way the server writes them, and not words after "node"', () => {
    expect(logFields(`preempting ${JOB} for 11111111-2222-4333-8444-555555555555: guarantee`)).toEqual({ job: JOB });
    expect(logFields(`node h100-01 is up: its agent is heard again`)).toEqual({ node: 'h100-01' });
    expect(logFields('node is down: agent silent')).toEqual({});
    expect(logFields(`job ${JOB.toUpperCase()}: a rank exited 0 on node n1.example`)).toEqual({ job: JOB, node: 'n1.example' });
  });

  it('a bad value is refused at start, naming the variable and the choices', () => {
    expect(() => parseServerConfig({ NURI_LOG_FORMAT: 'xml' })).toThrow(/NURI_LOG_FORMAT: .*"text"\|"json"|NURI_LOG_FORMAT: .*text.*json/);
    expect(parseServerConfig({}).logFormat).toBe('text');
  });

  it('a server started with NURI_LOG_FORMAT=json writes only JSON lines while it starts and serves', async () => {
    const database = await openDatabase({});
    await migrateToLatest(database.db);
    const out = captureStdout();
    const server = await startServer(parseServerConfig({ PORT: '0', HOST: '127.0.0.1', NURI_ROLES: 'gateway', NURI_DEMO: '0', NURI_LOG_FORMAT: 'json' }), { database });
    try {
      expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    } finally {
      await server.close();
      await database.close();
    }
    const lines = out.lines();
    // Nest's own start-up lines (modules, routes, "successfully started") and the gateway's.
    expect(lines.length).toBeGreaterThan(3);
    for (const l of lines) expect(() => JSON.parse(l), l).not.toThrow();
    expect(lines.map((l) => (JSON.parse(l) as { message: string }).message).join('\n')).toMatch(/successfully started/);
  });
});
