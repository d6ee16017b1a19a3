import { Limiter } from './limiter';

/** Hellos processed at once by default (see `maxHellosInFlight`). */
export const MAX_HELLOS_IN_FLIGHT = 32;
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, WebSocket, type RawData } from 'ws';
import { AgentLogsData, AgentLogsEnd, AgentMessage, WIRE_VERSION, type ServerMessage } from '@nuri/contracts';
import type { z } from 'zod';
import type { AgentLink, FleetPort, SequencedMessage } from '../fleet-port';
import { TokenBucket } from './token-bucket';

export interface AgentGatewayOptions {
  fleet: FleetPort;
  /** Attach to this server's `upgrade` event (the Nest app's http.Server) ... */
  server?: Server;
  /** ... or listen on a port of its own (0 = any free port; see `port` after start()). */
  port?: number;
  host?: string;
  /** Path of the agent endpoint. Default '/agent'. */
  path?: string;
  /** Largest message accepted; a larger one closes the connection (1009). Default 1 MiB. */
  maxPayloadBytes?: number;
  /** Per connection: sustained messages a second and burst. Default 100/s, burst 500. */
  ratePerSecond?: number;
  rateBurst?: number;
  /** Messages a connection may have queued behind the rate limit before it is closed. Default 2000. */
  maxQueued?: number;
  /** Invalid messages (malformed, unknown, out of protocol) before the connection is closed. Default 5. */
  maxViolations?: number;
  /** Ping period; a connection that did not answer the previous ping is terminated. Default 15 s. */
  pingIntervalMs?: number;
  /** Heartbeat period told to agents in welcome. Default 5. */
  heartbeatSeconds?: number;
  /** A connection that does not say hello in this time is closed. Default 10 s. */
  helloTimeoutMs?: number;
  /**
   * Connections one node may hold open before saying hello; more are refused (429) at the
   * upgrade, so one token cannot pile up sockets. Default 4 (a reconnect may overlap a dying one).
   */
  maxPendingPerNode?: number;
  /** Upgrades being authenticated at once (each a database read); more are refused (503). Default 512. */
  maxAuthInFlight?: number;
  /**
   * Hellos processed at once; the rest wait their turn. The fleet batches their reads and
   * writes (two statements for as many hellos as this lets in), and each may add a write of a changed
   * inventory or a read of the jobs to start or stop, so this bounds what 4,000 agents
   * reconnecting after a restart take from the database pool the api shares. Default 32
   * (16 unbatched hellos slowed GET /v1/jobs/:id to 1.4 s in such a storm).
   */
  maxHellosInFlight?: number;
  log?: (level: 'debug' | 'info' | 'warn' | 'error', msg: string) => void;
  /**
   * Job output relay (LogRelay): agents' answers to logs_open, and the end of a node's
   * connection (what it was sending cannot complete). Without it, answers are dropped.
   */
  logs?: {
    message(node: string, msg: z.infer<typeof AgentLogsData> | z.infer<typeof AgentLogsEnd>): void;
    closed(node: string): void;
  };
  /** Called on every counter increment (metrics hook); `stats` holds the running totals. */
  onCount?: (counter: keyof GatewayCounters, node: string | undefined) => void;
}

export interface GatewayCounters {
  connectionsAccepted: number;
  authFailures: number;
  malformedMessages: number;
  unknownMessages: number;
  invalidMessages: number;
  oversizedMessages: number;
  protocolViolations: number;
  nodeMismatches: number;
  closedForAbuse: number;
  tooManyPending: number;
  rateLimitWaits: number;
  pingTimeouts: number;
  replacedConnections: number;
  applied: number;
  duplicates: number;
  fleetErrors: number;
}

export interface GatewayStats extends GatewayCounters {
  /** Live connections that completed hello. */
  connectedNodes: number;
}

interface Conn {
  ws: WebSocket;
  node: string;
  stream?: string;
  hello: boolean;
  closed: boolean;
  alive: boolean;
  violations: number;
  queued: number;
  chain: Promise<void>;
  bucket: TokenBucket;
  helloTimer?: NodeJS.Timeout;
}

const KNOWN_TYPES = new Set(['hello', 'heartbeat', 'samples', 'job_event', 'gpu_fault', 'logs_data', 'logs_end']);
const NODE_HEADER_MAX = 253;

/**
 * WebSocket endpoint for node agents. Authenticates at the upgrade (401 before any
 * WebSocket exists), then processes each connection's messages strictly in order through
 * a promise chain: hello -> FleetPort.hello + welcome; sequenced messages ->
 * FleetPort.apply, then ack with that seq. Because a connection is processed in order and
 * the agent sends in seq order, acking a message's seq acknowledges everything the agent
 * sent before it on this stream (anything missing below it was acked earlier or dropped by
 * the agent's bounded buffer). When FleetPort fails, nothing more is applied on that
 * connection: it is closed (1011) without ack and the agent resends after reconnecting.
 */
export class AgentGateway implements AgentLink {
  private readonly wss: WebSocketServer;
  private readonly byNode = new Map<string, Conn>();
  private readonly conns = new Set<Conn>();
  /** The fleet's writes that a node's connection is gone, in flight (`stop` waits for them). */
  private readonly disconnecting = new Set<Promise<void>>();
  /** Each node's open connections (a few at most): counting a node's among all 4,000 for every upgrade was quadratic in a reconnect storm. */
  private readonly connsOf = new Map<string, Set<Conn>>();
  /** Hellos being processed (see maxHellosInFlight). */
  private readonly hellos: Limiter;
  private readonly path: string;
  private ownServer: Server | undefined;
  private pingTimer: NodeJS.Timeout | undefined;
  private authInFlight = 0;
  private readonly counters: GatewayCounters = {
    connectionsAccepted: 0,
    authFailures: 0,
    malformedMessages: 0,
    unknownMessages: 0,
    invalidMessages: 0,
    oversizedMessages: 0,
    protocolViolations: 0,
    nodeMismatches: 0,
    closedForAbuse: 0,
    tooManyPending: 0,
    rateLimitWaits: 0,
    pingTimeouts: 0,
    replacedConnections: 0,
    applied: 0,
    duplicates: 0,
    fleetErrors: 0,
  };

  constructor(private readonly opts: AgentGatewayOptions) {
    this.hellos = new Limiter(opts.maxHellosInFlight ?? MAX_HELLOS_IN_FLIGHT);
    if (!opts.server && opts.port === undefined) throw new Error('AgentGateway needs `server` or `port`');
    this.path = opts.path ?? '/agent';
    this.wss = new WebSocketServer({ noServer: true, maxPayload: opts.maxPayloadBytes ?? 1024 * 1024, clientTracking: false });
  }

  /** Port actually listened on (own-port mode) or of the attached server. */
  get port(): number | undefined {
    const addr = (this.ownServer ?? this.opts.server)?.address();
    return addr && typeof addr === 'object' ? (addr as AddressInfo).port : undefined;
  }

  get stats(): GatewayStats {
    return { ...this.counters, connectedNodes: this.byNode.size };
  }

  async start(): Promise<void> {
    if (this.opts.server) {
      this.opts.server.on('upgrade', this.onUpgrade);
    } else {
      const srv = createServer((_req, res) => {
        res.writeHead(426, { 'content-type': 'text/plain' });
        res.end('WebSocket endpoint for node agents\n');
      });
      srv.on('upgrade', this.onUpgrade);
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(this.opts.port, this.opts.host ?? '127.0.0.1', () => resolve());
      });
      this.ownServer = srv;
    }
    const every = this.opts.pingIntervalMs ?? 15_000;
    this.pingTimer = setInterval(() => this.pingAll(), every);
    this.pingTimer.unref?.();
  }

  async stop(): Promise<void> {
    clearInterval(this.pingTimer);
    this.opts.server?.off('upgrade', this.onUpgrade);
    const open = [...this.conns];
    for (const c of open) c.ws.terminate();
    // Each socket's close, and the fleet's write that its node is gone, come after: a server's
    // shutdown closes the database next, and every one of those writes failed, logged as an error.
    await Promise.all(open.map((c) => (c.ws.readyState === WebSocket.CLOSED ? undefined : new Promise<void>((r) => c.ws.once('close', () => r())))));
    await Promise.allSettled([...this.disconnecting]);
    if (this.ownServer) {
      const srv = this.ownServer;
      this.ownServer = undefined;
      srv.closeAllConnections?.();
      await new Promise<void>((r) => srv.close(() => r()));
    }
    this.wss.close();
  }

  // ---- AgentLink ----

  send(nodeName: string, message: ServerMessage): boolean {
    const c = this.byNode.get(nodeName);
    if (!c || c.closed || c.ws.readyState !== WebSocket.OPEN) return false;
    c.ws.send(JSON.stringify(message));
    return true;
  }

  isConnected(nodeName: string): boolean {
    const c = this.byNode.get(nodeName);
    return !!c && !c.closed && c.ws.readyState === WebSocket.OPEN;
  }

  // ---- upgrade and auth ----

  private readonly onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    let pathname: string;
    try {
      pathname = new URL(req.url ?? '/', 'http://localhost').pathname;
    } catch {
      pathname = '';
    }
    if (pathname !== this.path) {
      // Other upgrade handlers of a shared server may own this path.
      if (this.ownServer) reject(socket, 404, 'Not Found');
      return;
    }
    socket.on('error', () => undefined);
    const node = header(req, 'x-nuri-node');
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header(req, 'authorization') ?? '');
    if (!node || node.length > NODE_HEADER_MAX || !m) {
      this.count('authFailures', node);
      reject(socket, 401, 'Unauthorized');
      return;
    }
    if (this.authInFlight >= (this.opts.maxAuthInFlight ?? 512)) {
      this.count('tooManyPending', node);
      this.log('warn', `refused an upgrade for node ${JSON.stringify(node)}: ${this.authInFlight} authentications in flight`);
      reject(socket, 503, 'Service Unavailable');
      return;
    }
    this.authInFlight++;
    this.opts.fleet.authenticate(node, m[1]!).finally(() => this.authInFlight--).then(
      (ok) => {
        if (!ok) {
          this.count('authFailures', node);
          this.log('warn', `auth failed for node ${JSON.stringify(node)} from ${req.socket.remoteAddress}`);
          reject(socket, 401, 'Unauthorized');
          return;
        }
        if (socket.destroyed) return;
        const waiting = this.pendingOf(node);
        if (waiting >= (this.opts.maxPendingPerNode ?? 4)) {
          this.count('tooManyPending', node);
          this.log('warn', `node ${node}: refused a connection, ${waiting} already open without hello`);
          reject(socket, 429, 'Too Many Requests');
          return;
        }
        this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, node));
      },
      (err: Error) => {
        this.count('fleetErrors', node);
        this.log('error', `authenticate failed: ${err.message}`);
        reject(socket, 503, 'Service Unavailable');
      },
    );
  };

  /** Connections of a node that have not said hello yet. */
  private pendingOf(node: string): number {
    let n = 0;
    for (const c of this.connsOf.get(node) ?? []) if (!c.hello && !c.closed) n++;
    return n;
  }

  private onConnection(ws: WebSocket, node: string): void {
    this.count('connectionsAccepted', node);
    const c: Conn = {
      ws,
      node,
      hello: false,
      closed: false,
      alive: true,
      violations: 0,
      queued: 0,
      chain: Promise.resolve(),
      bucket: new TokenBucket(this.opts.ratePerSecond ?? 100, this.opts.rateBurst ?? 500),
    };
    this.conns.add(c);
    const ofNode = this.connsOf.get(node);
    if (ofNode) ofNode.add(c);
    else this.connsOf.set(node, new Set([c]));
    c.helloTimer = setTimeout(() => {
      if (!c.hello) this.closeConn(c, 1008, 'no hello');
    }, this.opts.helloTimeoutMs ?? 10_000);
    ws.on('pong', () => (c.alive = true));
    ws.on('message', (data, isBinary) => this.onMessage(c, data, isBinary));
    ws.on('error', (err: Error & { code?: string }) => {
      if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
        this.count('oversizedMessages', node);
        this.log('warn', `node ${node}: message over ${this.opts.maxPayloadBytes ?? 1024 * 1024} bytes, connection closed`);
      } else this.log('debug', `node ${node}: socket error ${err.message}`);
    });
    ws.on('close', () => this.onClose(c));
  }

  private onClose(c: Conn): void {
    c.closed = true;
    clearTimeout(c.helloTimer);
    this.conns.delete(c);
    const ofNode = this.connsOf.get(c.node);
    ofNode?.delete(c);
    if (ofNode?.size === 0) this.connsOf.delete(c.node);
    if (this.byNode.get(c.node) === c) {
      this.byNode.delete(c.node);
      this.opts.logs?.closed(c.node);
      const told: Promise<void> = this.opts.fleet
        .disconnected(c.node)
        .catch((e: Error) => this.log('error', `disconnected(${c.node}) failed: ${e.message}`))
        .finally(() => this.disconnecting.delete(told));
      this.disconnecting.add(told);
    }
  }

  private closeConn(c: Conn, code: number, reason: string): void {
    if (c.closed) return;
    c.closed = true;
    c.ws.close(code, reason);
    // A peer that does not complete the close handshake is cut off.
    setTimeout(() => c.ws.terminate(), 2000).unref?.();
  }

  private pingAll(): void {
    for (const c of this.conns) {
      if (!c.alive) {
        this.count('pingTimeouts', c.node);
        this.log('warn', `node ${c.node}: no pong, terminating`);
        c.ws.terminate();
        continue;
      }
      c.alive = false;
      try {
        c.ws.ping();
      } catch {
        /* closing */
      }
    }
  }

  // ---- messages ----

  private onMessage(c: Conn, data: RawData, isBinary: boolean): void {
    c.alive = true;
    if (c.closed) return;
    const text = isBinary ? null : data.toString();
    if (text !== null && c.hello && this.relayLogs(c, text)) return;
    c.queued++;
    if (c.queued > (this.opts.maxQueued ?? 2000)) {
      this.count('closedForAbuse', c.node);
      this.sendTo(c, { v: WIRE_VERSION, type: 'error', code: 'rate_limited', message: 'too many messages queued; slow down' });
      this.closeConn(c, 1008, 'rate limit');
      return;
    }
    c.chain = c.chain
      .then(async () => {
        if (!c.bucket.tryTake()) {
          this.count('rateLimitWaits', c.node);
          await c.bucket.take();
        }
        if (!c.closed) await this.handle(c, text);
      })
      .catch((err: Error) => {
        this.count('fleetErrors', c.node);
        this.log('error', `node ${c.node}: ${err.message}; closing so the agent resends`);
        this.sendTo(c, { v: WIRE_VERSION, type: 'error', code: 'internal', message: 'server error; reconnect and resend' });
        this.closeConn(c, 1011, 'server error');
      })
      .finally(() => c.queued--);
  }

  private async handle(c: Conn, text: string | null): Promise<void> {
    if (text === null) return this.violation(c, 'malformedMessages', 'malformed', 'binary frames are not part of the protocol');
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (e) {
      return this.violation(c, 'malformedMessages', 'malformed', `invalid JSON: ${(e as Error).message}`.slice(0, 300));
    }
    const type = raw && typeof raw === 'object' ? (raw as { type?: unknown }).type : undefined;
    if (typeof type !== 'string' || !KNOWN_TYPES.has(type)) {
      return this.violation(c, 'unknownMessages', 'unknown_type', `unknown message type ${JSON.stringify(type ?? null)?.slice(0, 64)}`);
    }
    const parsed = AgentMessage.safeParse(raw);
    if (!parsed.success) {
      const issues = parsed.error.issues
        .slice(0, 3)
        .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
        .join('; ');
      return this.violation(c, 'invalidMessages', 'invalid_message', `invalid ${type}: ${issues}`.slice(0, 500));
    }
    const msg = parsed.data;
    if (msg.type === 'hello') {
      if (c.hello) return this.violation(c, 'protocolViolations', 'duplicate_hello', 'hello was already received on this connection');
      if (msg.node !== c.node) {
        this.count('nodeMismatches', c.node);
        this.sendTo(c, { v: WIRE_VERSION, type: 'error', code: 'node_mismatch', message: `authenticated as ${c.node}; a node speaks only for itself` });
        this.closeConn(c, 1008, 'node mismatch');
        return;
      }
      // The agent said hello: however long the queue of hellos makes it wait for its welcome, it
      // is not closed for silence (closing it sent it back to reconnect, and a reconnect storm
      // after a restart fed on itself: 300 of 4,000 agents were back 90 s later).
      clearTimeout(c.helloTimer);
      const r = await this.hellos.run(() => this.opts.fleet.hello(c.node, msg));
      if (c.closed) return;
      c.hello = true;
      c.stream = msg.stream;
      const old = this.byNode.get(c.node);
      this.byNode.set(c.node, c);
      if (old && old !== c) {
        this.count('replacedConnections', c.node);
        this.opts.logs?.closed(c.node); // output requests went to the old connection
        this.closeConn(old, 4000, 'replaced by a newer connection');
      }
      this.sendTo(c, { v: WIRE_VERSION, type: 'welcome', node: c.node, heartbeatSeconds: this.opts.heartbeatSeconds ?? 5, ackedSeq: r.ackedSeq });
      for (const m of r.send) this.sendTo(c, m);
      return;
    }
    if (!c.hello || !c.stream) return this.violation(c, 'protocolViolations', 'hello_required', 'say hello first');
    if (msg.type === 'heartbeat') {
      await this.opts.fleet.heartbeat(c.node, msg.at);
      return;
    }
    if (msg.type === 'logs_data' || msg.type === 'logs_end') {
      this.opts.logs?.message(c.node, msg); // sent before the hello was applied: relayed in order here
      return;
    }
    const result = await this.opts.fleet.apply(c.node, c.stream, msg as SequencedMessage);
    this.count(result === 'applied' ? 'applied' : 'duplicates', c.node);
    if (!c.closed) this.sendTo(c, { v: WIRE_VERSION, type: 'ack', stream: c.stream, seq: msg.seq });
  }

  /**
   * Job output goes straight to the relay, beside the ordered chain: it touches no database,
   * is not acknowledged, and must not wait behind (nor take the rate of) what the fleet applies.
   * Its own order is kept (it is handled as it arrives). False: not output, the chain takes it.
   */
  private relayLogs(c: Conn, text: string): boolean {
    if (!this.opts.logs || !text.includes('"logs_')) return false;
    let raw: { type?: unknown };
    try {
      raw = JSON.parse(text) as { type?: unknown };
    } catch {
      return false;
    }
    const schema = raw?.type === 'logs_data' ? AgentLogsData : raw?.type === 'logs_end' ? AgentLogsEnd : undefined;
    const parsed = schema?.safeParse(raw);
    if (!parsed?.success) return false; // not output, or invalid: the chain answers it as usual
    this.opts.logs.message(c.node, parsed.data);
    return true;
  }

  private violation(c: Conn, counter: keyof GatewayCounters, code: string, message: string): void {
    this.count(counter, c.node);
    c.violations++;
    this.sendTo(c, { v: WIRE_VERSION, type: 'error', code, message });
    if (c.violations >= (this.opts.maxViolations ?? 5)) {
      this.count('closedForAbuse', c.node);
      this.log('warn', `node ${c.node}: ${c.violations} invalid messages, closing`);
      this.closeConn(c, 1008, 'too many invalid messages');
    }
  }

  private sendTo(c: Conn, m: ServerMessage): void {
    if (c.ws.readyState === WebSocket.OPEN) c.ws.send(JSON.stringify(m));
  }

  private count(counter: keyof GatewayCounters, node: string | undefined): void {
    this.counters[counter]++;
    this.opts.onCount?.(counter, node);
    this.opts.fleet.counted?.(counter, node);
  }

  private log(level: 'debug' | 'info' | 'warn' | 'error', msg: string): void {
    this.opts.log?.(level, `[gateway] ${msg}`);
  }
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0]! : v;
}

function reject(socket: Duplex, status: number, text: string): void {
  if (socket.destroyed) return;
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${text.length}\r\n\r\n${text}`);
}
