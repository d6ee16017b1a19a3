import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ServerMessage, type StartJob } from '@nuri/contracts';
import { Agent, type AgentOptions } from '../../apps/agent/src/agent';
import { AgentGateway, type AgentGatewayOptions } from '../../apps/server/src/gateway/transport';
import { FakeFleet } from './fake-fleet';

const TOKENS = { 'node-a': 'tok-a', 'node-b': 'tok-b', 'node-c': 'tok-c' };
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function gateway(fleet: FakeFleet, opts: Partial<AgentGatewayOptions> = {}) {
  const gw = new AgentGateway({ fleet, port: 0, pingIntervalMs: 1000, ...opts });
  await gw.start();
  cleanups.push(() => gw.stop());
  return { gw, url: `ws://127.0.0.1:${gw.port}/agent` };
}

function agent(node: keyof typeof TOKENS, url: string, extra: Partial<AgentOptions> = {}) {
  const a = new Agent({
    gatewayUrl: url,
    nodeName: node,
    nodeToken: TOKENS[node],
    workDir: mkdtempSync(join(tmpdir(), `nuri-agent-${node}-`)),
    sampleIntervalMs: 50,
    backoffBaseMs: 20,
    backoffCapMs: 200,
    graceSeconds: 1,
    simulated: { gpus: 8 },
    ...extra,
  });
  cleanups.push(() => a.stop());
  return a;
}

/** A raw client: returns the socket and a queue of parsed server messages. */
function raw(url: string, headers: Record<string, string>) {
  const ws = new WebSocket(url, { headers });
  const msgs: ServerMessage[] = [];
  ws.on('message', (d) => msgs.push(ServerMessage.parse(JSON.parse(d.toString()))));
  ws.on('error', () => undefined);
  cleanups.push(() => ws.terminate());
  const closed = new Promise<number>((r) => ws.on('close', (code) => r(code)));
  const status = new Promise<number>((r) => {
    ws.on('unexpected-response', (_q, res) => { r(res.statusCode ?? 0); ws.terminate(); });
    ws.on('open', () => r(101));
  });
  return { ws, msgs, closed, status };
}

const hello = (node: string, stream = 's1') => JSON.stringify({ v: 1, type: 'hello', node, stream, agentVersion: 't', gpus: [], running: [] });
const until = async (pred: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!pred()) { if (Date.now() > end) throw new Error('timeout'); await new Promise((r) => setTimeout(r, 20)); }
};
const startJob = (jobId: string, command: string[], extra: Partial<StartJob> = {}): StartJob => ({
  v: 1, type: 'start', jobId, command, env: {}, workingDir: null, gpuIndices: [0], timeLimitSeconds: 30, graceSeconds: 1, ...extra,
});

describe('gateway transport with real agents over loopback', () => {
  it('refuses a wrong token with 401 before the upgrade, and a missing node header', async () => {
    const fleet = new FakeFleet(TOKENS);
    const { gw, url } = await gateway(fleet);
    expect(await raw(url, { Authorization: 'Bearer nope', 'X-Nuri-Node': 'node-a' }).status).toBe(401);
    expect(await raw(url, { Authorization: 'Bearer tok-a' }).status).toBe(401);
    expect(await raw(url.replace('/agent', '/other'), { Authorization: 'Bearer tok-a', 'X-Nuri-Node': 'node-a' }).status).toBe(404);
    const a = agent('node-a', url, { nodeToken: 'wrong' } as Partial<AgentOptions>);
    await a.start();
    await new Promise((r) => setTimeout(r, 200));
    expect(a.connected).toBe(false);
    expect(fleet.hellos).toHaveLength(0);
    expect(gw.stats.authFailures).toBeGreaterThanOrEqual(3);
  });

  it('keeps an agent whose hello waits its turn past the hello timeout, and processes hellos a few at a time', async () => {
    const fleet = new FakeFleet(TOKENS);
    let inFlight = 0;
    let peak = 0;
    const slow = fleet.hello.bind(fleet);
    fleet.hello = async (node, h) => {
      peak = Math.max(peak, ++inFlight);
      await new Promise((r) => setTimeout(r, 250));
      inFlight--;
      return slow(node, h);
    };
    const { url } = await gateway(fleet, { helloTimeoutMs: 200, maxHellosInFlight: 1 });
    const clients = (['node-a', 'node-b', 'node-c'] as const).map((n) => raw(url, { Authorization: `Bearer ${TOKENS[n]}`, 'X-Nuri-Node': n }));
    for (const [i, c] of clients.entries()) {
      expect(await c.status).toBe(101);
      c.ws.send(hello(['node-a', 'node-b', 'node-c'][i]!));
    }
    // The third waits about 750 ms for its welcome, well past the 200 ms hello timeout.
    await until(() => clients.every((c) => c.msgs.some((m) => m.type === 'welcome')), 5000);
    expect(peak).toBe(1);
    expect(clients.every((c) => c.ws.readyState === WebSocket.OPEN)).toBe(true);
  });

  it("closes a connection whose hello names another node; the port never sees it", async () => {
    const fleet = new FakeFleet(TOKENS);
    const { gw, url } = await gateway(fleet);
    const c = raw(url, { Authorization: 'Bearer tok-a', 'X-Nuri-Node': 'node-a' });
    expect(await c.status).toBe(101);
    c.ws.send(hello('node-b'));
    expect(await c.closed).toBe(1008);
    expect(c.msgs[0]).toMatchObject({ type: 'error', code: 'node_mismatch' });
    expect(fleet.hellos).toHaveLength(0);
    expect(gw.stats.nodeMismatches).toBe(1);
  });

  it('answers malformed, unknown and invalid messages with errors, closes after repeated abuse, keeps serving others', async () => {
    const fleet = new FakeFleet(TOKENS);
    const { gw, url } = await gateway(fleet, { maxViolations: 4, maxPayloadBytes: 64 * 1024 });
    const good = agent('node-b', url);
    await good.start();
    await good.waitFor(() => good.connected);

    const c = raw(url, { Authorization: 'Bearer tok-a', 'X-Nuri-Node': 'node-a' });
    await c.status;
    c.ws.send('{not json');
    c.ws.send(JSON.stringify({ v: 1, type: 'teleport' }));
    c.ws.send(hello('node-a'));
    c.ws.send(JSON.stringify({ v: 1, type: 'samples', seq: -1, at: 1, gpus: [] }));
    await until(() => c.msgs.length >= 4);
    expect(c.msgs.map((m) => (m.type === 'error' ? m.code : m.type))).toEqual(['malformed', 'unknown_type', 'welcome', 'invalid_message']);
    expect((c.msgs[3] as { message: string }).message).toContain('seq');
    c.ws.send('[]');
    c.ws.send('null');
    expect(await c.closed).toBe(1008);
    expect(gw.stats).toMatchObject({ malformedMessages: 1, closedForAbuse: 1 });
    expect(gw.stats.unknownMessages).toBeGreaterThanOrEqual(2);

    // Oversized: the connection is closed with 1009, nothing applied from it.
    const big = raw(url, { Authorization: 'Bearer tok-c', 'X-Nuri-Node': 'node-c' });
    await big.status;
    big.ws.send(hello('node-c', 'big'));
    await until(() => big.msgs.some((m) => m.type === 'welcome'));
    big.ws.send(JSON.stringify({ v: 1, type: 'samples', seq: 1, at: 1, gpus: [], pad: 'x'.repeat(100_000) }));
    expect(await big.closed).toBe(1009);
    expect(gw.stats.oversizedMessages).toBe(1);
    expect(fleet.appliedSeqs('node-c', 'big')).toEqual([]);

    // The good agent is still being served.
    const before = fleet.appliedSeqs('node-b', good.streamId).length;
    await fleet.until(() => fleet.appliedSeqs('node-b', good.streamId).length > before + 3, 5000, 'good agent samples');
    expect(good.connected).toBe(true);
  });

  it('loses nothing and applies nothing twice across repeated disconnects mid-stream', async () => {
    const fleet = new FakeFleet(TOKENS);
    const { url } = await gateway(fleet);
    const a = agent('node-a', url, { sampleIntervalMs: 10 });
    await a.start();
    await a.waitFor(() => a.connected);
    for (let i = 0; i < 4; i++) {
      a.injectFault({ kind: 'xid', index: i, code: 79 });
      await new Promise((r) => setTimeout(r, 60));
      a.dropConnection();
      await a.waitFor(() => a.connected, 5000);
    }
    a.injectFault({ kind: 'hot', index: 5 });
    await new Promise((r) => setTimeout(r, 60));
    const last = a.stats().lastSeq;
    await fleet.until(() => a.stats().ackedSeq >= last, 5000, 'all acked');
    const seqs = fleet.appliedSeqs('node-a', a.streamId).filter((s) => s <= last);
    expect(seqs).toEqual(Array.from({ length: last }, (_, i) => i + 1));
    expect(new Set(seqs).size).toBe(seqs.length);
    expect(a.stats().connects).toBeGreaterThanOrEqual(5);
    const faults = fleet.applied.filter((x) => x.message.type === 'gpu_fault').map((x) => x.message);
    expect(faults).toHaveLength(5);
    expect(faults[0]).toMatchObject({ kind: 'xid', code: 79, index: 0 });
  });

  it('buffers while the gateway is down: oldest samples dropped and counted, job events kept', async () => {
    const fleet = new FakeFleet(TOKENS);
    const { gw, url } = await gateway(fleet);
    const port = gw.port!;
    const a = agent('node-a', url, { sampleIntervalMs: 10, maxBufferedSamples: 5 });
    await a.start();
    await a.waitFor(() => a.connected);
    await gw.stop();
    await a.waitFor(() => !a.connected);
    a.runner.start(startJob('during-outage', ['sh', '-c', 'exit 4']));
    await new Promise((r) => setTimeout(r, 300));
    expect(a.stats().droppedSamples).toBeGreaterThan(0);
    const gw2 = new AgentGateway({ fleet, port });
    await gw2.start();
    cleanups.push(() => gw2.stop());
    await fleet.until(() => fleet.exit('node-a', 'during-outage') !== undefined, 5000, 'exit after outage');
    expect(fleet.exit('node-a', 'during-outage')).toMatchObject({ exitCode: 4, cause: 'exit' });
    await fleet.until(() => fleet.applied.some((x) => x.message.type === 'samples' && (x.message.droppedSamples ?? 0) > 0), 3000, 'drop count reported');
  });

  it('runs jobs the server starts: sleep 1 exits 0, exit 3 fails with 3, spawn failure reported', async () => {
    const fleet = new FakeFleet(TOKENS);
    const { gw, url } = await gateway(fleet);
    const a = agent('node-a', url);
    await a.start();
    await a.waitFor(() => a.connected);
    expect(gw.send('node-a', startJob('ok', ['sleep', '1'], { gpuIndices: [0, 1] }))).toBe(true);
    expect(gw.send('node-a', startJob('bad', ['sh', '-c', 'exit 3']))).toBe(true);
    expect(gw.send('node-a', startJob('nobin', ['/no/such/binary']))).toBe(true);
    await fleet.until(() => ['ok', 'bad', 'nobin'].every((j) => fleet.exit('node-a', j)), 10_000, 'three exits');
    expect(fleet.exit('node-a', 'ok')).toMatchObject({ exitCode: 0, cause: 'exit' });
    expect(fleet.exit('node-a', 'bad')).toMatchObject({ exitCode: 3, cause: 'exit' });
    expect(fleet.exit('node-a', 'nobin')).toMatchObject({ exitCode: null, cause: 'spawn_failed' });
    expect(fleet.jobEvents.get('node-a/ok/started')).toMatchObject({ kind: 'started' });
    // While 'ok' ran, its GPUs showed utilization in the samples.
    const busy = fleet.applied.some((x) => x.message.type === 'samples' && (x.message.gpus.find((g) => g.index === 1)?.utilization ?? 0) > 0.5);
    expect(busy).toBe(true);
    expect(gw.send('node-zzz', startJob('x', ['true']))).toBe(false);
  });

  it('delivers a pending exit after the agent is killed and restarted (new stream, journal resent)', async () => {
    const fleet = new FakeFleet(TOKENS);
    const { gw, url } = await gateway(fleet);
    const workDir = mkdtempSync(join(tmpdir(), 'nuri-crash-'));
    const a1 = agent('node-a', url, { workDir });
    await a1.start();
    await a1.waitFor(() => a1.connected);
    // The database goes away: nothing is acked, the connection is closed each time.
    fleet.failApply = (m) => m.type === 'job_event';
    gw.send('node-a', startJob('pending-exit', ['sh', '-c', 'sleep 0.2; exit 7']));
    await a1.waitFor(() => !a1.runner.isRunning('pending-exit') && a1.stats().lastSeq > 0, 5000);
    await new Promise((r) => setTimeout(r, 300));
    a1.crash();
    expect(fleet.exit('node-a', 'pending-exit')).toBeUndefined();
    fleet.failApply = undefined;
    const a2 = agent('node-a', url, { workDir });
    await a2.start();
    await fleet.until(() => fleet.exit('node-a', 'pending-exit') !== undefined, 5000, 'exit after restart');
    expect(fleet.exit('node-a', 'pending-exit')).toMatchObject({ exitCode: 7, cause: 'exit' });
    expect(a2.streamId).not.toBe(a1.streamId);
    expect(gw.stats.fleetErrors).toBeGreaterThan(0);
    // Once acked, the journal is pruned: a third start has nothing to resend.
    await a2.waitFor(() => a2.stats().pending === 0 || a2.stats().ackedSeq >= 2, 3000);
  });

  it('a new connection from the same node replaces the old one without a disconnect', async () => {
    const fleet = new FakeFleet(TOKENS);
    const { gw, url } = await gateway(fleet);
    const c1 = raw(url, { Authorization: 'Bearer tok-a', 'X-Nuri-Node': 'node-a' });
    await c1.status;
    c1.ws.send(hello('node-a', 'one'));
    await until(() => gw.isConnected('node-a'));
    const c2 = raw(url, { Authorization: 'Bearer tok-a', 'X-Nuri-Node': 'node-a' });
    await c2.status;
    c2.ws.send(hello('node-a', 'two'));
    expect(await c1.closed).toBe(4000);
    expect(gw.isConnected('node-a')).toBe(true);
    expect(fleet.disconnects).toEqual([]);
    c2.ws.close();
    await fleet.until(() => fleet.disconnects.length === 1, 3000, 'disconnect');
    expect(gw.isConnected('node-a')).toBe(false);
  });

  it("stops only once the fleet has been told of every connection it closed (a server's shutdown closes the database next)", async () => {
    const fleet = new FakeFleet(TOKENS);
    fleet.disconnectMs = 300;
    const { gw, url } = await gateway(fleet);
    const conns = (['node-a', 'node-b'] as const).map((n) => raw(url, { Authorization: `Bearer ${TOKENS[n]}`, 'X-Nuri-Node': n }));
    for (const [i, c] of conns.entries()) {
      await c.status;
      c.ws.send(hello(i ? 'node-b' : 'node-a'));
    }
    await until(() => gw.isConnected('node-a') && gw.isConnected('node-b'));
    await gw.stop();
    expect(fleet.disconnectsDone.sort()).toEqual(['node-a', 'node-b']);
  });

  it('terminates a connection that stops answering pings', async () => {
    const fleet = new FakeFleet(TOKENS);
    const { gw, url } = await gateway(fleet, { pingIntervalMs: 100 });
    const c = raw(url, { Authorization: 'Bearer tok-a', 'X-Nuri-Node': 'node-a' });
    await c.status;
    c.ws.send(hello('node-a'));
    await until(() => gw.isConnected('node-a'));
    (c.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    await fleet.until(() => fleet.disconnects.includes('node-a'), 3000, 'ping timeout');
    expect(gw.stats.pingTimeouts).toBe(1);
  });

  it('attaches to an existing http.Server on /agent and sends reconcile messages after welcome', async () => {
    const fleet = new FakeFleet(TOKENS);
    fleet.onHello.set('node-a', [{ v: 1, type: 'stop', jobId: 'ghost', reason: 'reconcile', graceSeconds: 0 }]);
    const srv = createServer((_q, r) => r.end('api'));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => new Promise<void>((r) => srv.close(() => r())));
    const gw = new AgentGateway({ fleet, server: srv });
    await gw.start();
    cleanups.push(() => gw.stop());
    const c = raw(`ws://127.0.0.1:${gw.port}/agent`, { Authorization: 'Bearer tok-a', 'X-Nuri-Node': 'node-a' });
    await c.status;
    c.ws.send(hello('node-a'));
    await until(() => c.msgs.length >= 2);
    expect(c.msgs[0]).toMatchObject({ type: 'welcome', node: 'node-a', ackedSeq: 0 });
    expect(c.msgs[1]).toMatchObject({ type: 'stop', jobId: 'ghost' });
    c.ws.send(JSON.stringify({ v: 1, type: 'samples', seq: 1, at: 1, gpus: [] }));
    c.ws.send(JSON.stringify({ v: 1, type: 'samples', seq: 1, at: 1, gpus: [] }));
    await until(() => c.msgs.filter((m) => m.type === 'ack').length === 2);
    expect(fleet.appliedSeqs('node-a', 's1')).toEqual([1]);
    expect(gw.stats).toMatchObject({ applied: 1, duplicates: 1 });
  });

  it('refuses (429) connections past a few per node that have not said hello, and logs it; a hello frees a place', async () => {
    const fleet = new FakeFleet(TOKENS);
    const logged: string[] = [];
    const { gw, url } = await gateway(fleet, { maxPendingPerNode: 3, log: (level, msg) => level !== 'debug' && logged.push(msg) });
    const auth = { Authorization: 'Bearer tok-a', 'X-Nuri-Node': 'node-a' };
    const first = [raw(url, auth), raw(url, auth), raw(url, auth)];
    expect(await Promise.all(first.map((c) => c.status))).toEqual([101, 101, 101]);
    expect(await raw(url, auth).status).toBe(429);
    // Another node is not affected; a hello on one of the three makes room.
    expect(await raw(url, { Authorization: 'Bearer tok-b', 'X-Nuri-Node': 'node-b' }).status).toBe(101);
    first[0]!.ws.send(hello('node-a'));
    await until(() => first[0]!.msgs.some((m) => m.type === 'welcome'));
    expect(await raw(url, auth).status).toBe(101);
    expect(gw.stats.tooManyPending).toBe(1);
    expect(logged.some((m) => /node-a: refused a connection, 3 already open without hello/.test(m))).toBe(true);
  });

  it('rate limits per connection by delaying (nothing dropped) and closes a flooding connection', async () => {
    const fleet = new FakeFleet(TOKENS);
    const { gw, url } = await gateway(fleet, { ratePerSecond: 40, rateBurst: 2, maxQueued: 30 });
    const c = raw(url, { Authorization: 'Bearer tok-a', 'X-Nuri-Node': 'node-a' });
    await c.status;
    c.ws.send(hello('node-a'));
    const t0 = Date.now();
    for (let seq = 1; seq <= 12; seq++) c.ws.send(JSON.stringify({ v: 1, type: 'samples', seq, at: 1, gpus: [] }));
    await until(() => c.msgs.filter((m) => m.type === 'ack').length === 12, 5000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(200);
    expect(fleet.appliedSeqs('node-a', 's1')).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    expect(gw.stats.rateLimitWaits).toBeGreaterThan(0);
    for (let i = 0; i < 200; i++) c.ws.send(JSON.stringify({ v: 1, type: 'heartbeat', at: i }));
    expect(await c.closed).toBe(1008);
    expect(c.msgs.some((m) => m.type === 'error' && m.code === 'rate_limited')).toBe(true);
  });

  it('after a crash with a job still running, the restarted agent kills its process group and reports it lost', async () => {
    const fleet = new FakeFleet(TOKENS);
    const { gw, url } = await gateway(fleet);
    const workDir = mkdtempSync(join(tmpdir(), 'nuri-orphan-'));
    const a1 = agent('node-a', url, { workDir });
    await a1.start();
    await a1.waitFor(() => a1.connected);
    gw.send('node-a', startJob('orphan', ['sleep', '30']));
    await fleet.until(() => fleet.jobEvents.has('node-a/orphan/started'), 5000, 'started');
    const pid = (fleet.jobEvents.get('node-a/orphan/started') as { pid: number }).pid;
    a1.crash();
    const a2 = agent('node-a', url, { workDir });
    await a2.start();
    await fleet.until(() => fleet.exit('node-a', 'orphan') !== undefined, 5000, 'lost exit');
    expect(fleet.exit('node-a', 'orphan')).toMatchObject({ cause: 'lost', exitCode: null });
    const dead = () => { try { return / [ZX] /.test(readFileSync(`/proc/${pid}/stat`, 'utf8')); } catch { return true; } };
    await until(() => dead(), 3000);
  });
});
