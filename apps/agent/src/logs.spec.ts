import { appendFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LOG_CHUNK_BYTES, LogServer } from './logs';

interface Collected {
  messages: { type: string; requestId: string; data?: string; error?: string }[];
  text(): string;
  end(): { error?: string } | undefined;
}

/** A connection that records what the agent sends; `buffered` simulates a full socket. */
function sink(state: { buffered?: number; open?: boolean } = {}) {
  const c: Collected = {
    messages: [],
    text: () => Buffer.concat(c.messages.filter((m) => m.type === 'logs_data').map((m) => Buffer.from(m.data!, 'base64'))).toString(),
    end: () => c.messages.find((m) => m.type === 'logs_end'),
  };
  return {
    c,
    sink: { send: (m: object) => c.messages.push(m as Collected['messages'][number]), buffered: () => state.buffered ?? 0, open: () => state.open ?? true },
  };
}

async function until(pred: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

let dir: string;
const running = new Set<string>();
const open = (requestId: string, jobId: string, extra: { tail?: number; follow?: boolean } = {}) => ({
  v: 1 as const,
  type: 'logs_open' as const,
  requestId,
  jobId,
  follow: extra.follow ?? false,
  ...(extra.tail !== undefined ? { tail: extra.tail } : {}),
});
const write = (jobId: string, text: string | Buffer) => {
  mkdirSync(join(dir, jobId), { recursive: true });
  appendFileSync(join(dir, jobId, 'output.log'), text);
};

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'nuri-logs-'));
  running.clear();
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('LogServer', () => {
  const server = (o: Partial<ConstructorParameters<typeof LogServer>[0]> = {}) => new LogServer({ outputDir: dir, isRunning: (j) => running.has(j), ...o });

  it('sends the whole file, then the end', async () => {
    write('j1', 'out 1\nerr 1\nout 2\n');
    const { c, sink: s } = sink();
    server().open(open('r1', 'j1'), s);
    await until(() => !!c.end());
    expect(c.text()).toBe('out 1\nerr 1\nout 2\n');
    expect(c.end()!.error).toBeUndefined();
  });

  it('tail=N sends the last N lines, with or without a final newline, across read blocks', async () => {
    const lines = Array.from({ length: 20_000 }, (_, i) => `line ${i}`);
    write('j1', lines.join('\n') + '\n');
    write('j2', 'a\nb\nc');
    const srv = server();
    const cases: [string, number, string][] = [
      ['j1', 2, 'line 19998\nline 19999\n'],
      ['j1', 0, ''],
      ['j2', 2, 'b\nc'],
      ['j2', 10, 'a\nb\nc'],
    ];
    for (const [job, tail, want] of cases) {
      const { c, sink: s } = sink();
      srv.open(open(`r-${job}-${tail}`, job, { tail }), s);
      await until(() => !!c.end());
      expect(c.text()).toBe(want);
    }
    const { c, sink: s } = sink();
    srv.open(open('big', 'j1', { tail: 15_000 }), s);
    await until(() => !!c.end());
    expect(c.text()).toBe(lines.slice(5_000).join('\n') + '\n');
  });

  it('sends chunks of at most 48 KiB raw', async () => {
    const big = Buffer.alloc(200 * 1024, 'x');
    write('j1', big);
    const { c, sink: s } = sink();
    server().open(open('r1', 'j1'), s);
    await until(() => !!c.end());
    const sizes = c.messages.filter((m) => m.type === 'logs_data').map((m) => Buffer.from(m.data!, 'base64').length);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(LOG_CHUNK_BYTES);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(big.length);
  });

  it('follow sends what is appended until the job ended, then drains and ends', async () => {
    running.add('j1');
    write('j1', 'before\n');
    const { c, sink: s } = sink();
    server().open(open('r1', 'j1', { follow: true }), s);
    await until(() => c.text() === 'before\n');
    write('j1', 'during\n');
    await until(() => c.text() === 'before\nduring\n');
    expect(c.end()).toBeUndefined();
    // The last output is written as the job ends: it still arrives before the end.
    write('j1', 'last\n');
    running.delete('j1');
    await until(() => !!c.end());
    expect(c.text()).toBe('before\nduring\nlast\n');
  });

  it('holds output while the connection is full or the gateway paused the request', async () => {
    write('j1', 'hello\n');
    const state = { buffered: 10 * 1024 * 1024 };
    const { c, sink: s } = sink(state);
    const srv = server();
    srv.open(open('r1', 'j1'), s);
    await new Promise((r) => setTimeout(r, 300));
    expect(c.messages).toEqual([]);
    state.buffered = 0;
    srv.pause('r1', true);
    await new Promise((r) => setTimeout(r, 300));
    expect(c.messages).toEqual([]);
    srv.pause('r1', false);
    await until(() => !!c.end());
    expect(c.text()).toBe('hello\n');
  });

  it('logs_close stops a follow', async () => {
    running.add('j1');
    write('j1', 'x\n');
    const { c, sink: s } = sink();
    const srv = server();
    srv.open(open('r1', 'j1', { follow: true }), s);
    await until(() => c.text() === 'x\n');
    srv.close('r1');
    await until(() => srv.active === 0);
  });

  it('refuses requests beyond the cap, unknown jobs, and a log that is a symlink', async () => {
    running.add('j1');
    write('j1', 'x\n');
    const srv = server({ maxRequests: 2 });
    const a = sink();
    const b = sink();
    const third = sink();
    srv.open(open('a', 'j1', { follow: true }), a.sink);
    srv.open(open('b', 'j1', { follow: true }), b.sink);
    srv.open(open('c', 'j1', { follow: true }), third.sink);
    expect(third.c.end()!.error).toMatch(/too many output requests on this node \(2 at once\)/);
    srv.closeAll();
    await until(() => srv.active === 0);

    const none = sink();
    srv.open(open('d', 'nope'), none.sink);
    await until(() => !!none.c.end());
    expect(none.c.end()!.error).toMatch(/no output for job nope on this node/);

    writeFileSync(join(dir, 'secret'), 'not yours\n');
    mkdirSync(join(dir, 'j3'));
    symlinkSync(join(dir, 'secret'), join(dir, 'j3', 'output.log'));
    const link = sink();
    srv.open(open('e', 'j3'), link.sink);
    await until(() => !!link.c.end());
    expect(link.c.end()!.error).toMatch(/no output for job j3/);
    expect(link.c.text()).toBe('');
    srv.closeAll();
    await until(() => srv.active === 0);
  });

  it('removes output older than the retention, never a running job, and says it expired', async () => {
    write('old', 'o\n');
    write('live', 'l\n');
    write('fresh', 'f\n');
    running.add('live');
    const past = new Date(Date.now() - 3 * 3600_000);
    for (const j of ['old', 'live']) utimesSync(join(dir, j, 'output.log'), past, past);
    const srv = server({ retentionHours: 2 });
    expect(await srv.sweep()).toEqual(['old']);
    expect(existsSync(join(dir, 'old'))).toBe(false);
    expect(existsSync(join(dir, 'live', 'output.log'))).toBe(true);
    expect(existsSync(join(dir, 'fresh', 'output.log'))).toBe(true);

    // A job that ends now starts its retention now, however old its last write.
    running.delete('live');
    srv.ended('live');
    expect(await srv.sweep()).toEqual([]);

    const { c, sink: s } = sink();
    srv.open(open('r1', 'old'), s);
    await until(() => !!c.end());
    expect(c.end()!.error).toMatch(/the output of job old on this node expired: it is kept 2 hours after the job ends/);
  });
});
