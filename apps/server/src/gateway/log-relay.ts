import { Inject, Injectable, Logger } from '@nestjs/common';
import { WIRE_VERSION, type AgentLogsData, type AgentLogsEnd } from '@nuri/contracts';
import { LogRelayRepository } from '@nuri/db';
import { randomUUID } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ServerResponse } from 'node:http';
import type { z } from 'zod';
import { hashToken } from '../auth/tokens';
import { Clock } from '../core/clock';
import { beginOutput, writeJson } from '../core/raw-response';
import type { AgentLink } from './fleet-port';

/** The internal endpoint api replicas call with a grant token (never a user's token). */
export const LOG_RELAY_PATH = '/internal/v1/logs';
/** How long the agent has to answer a logs_open before the reader gets a 504. */
const FIRST_ANSWER_MS = 15_000;

type LogsMessage = z.infer<typeof AgentLogsData> | z.infer<typeof AgentLogsEnd>;

interface Relay {
  node: string;
  rank: number;
  res: ServerResponse;
  started: boolean;
  paused: boolean;
  done: boolean;
  timer?: NodeJS.Timeout;
}

/** Same LogRelayRepository whoever provides it (the gateway module builds one on the database). */
export const LOG_RELAY_REPOSITORY = LogRelayRepository;

/**
 * The gateway's side of reading job output: an api replica checked the caller and wrote a
 * single-use grant; this process holds the node's agent connection. A request with a valid
 * grant (consumed here, so it works once) becomes a `logs_open` to the agent, whose
 * `logs_data` chunks are written to the HTTP response as they come; the agent is paused
 * while the response cannot take more (`logs_pause`/`logs_resume`), and told `logs_close`
 * when the reader goes away. Errors before the first byte are JSON with a status; after it,
 * a lost agent aborts the response (the reader sees an incomplete transfer, not an end).
 */
@Injectable()
export class LogRelay {
  private readonly log = new Logger('LogRelay');
  private link?: AgentLink;
  private readonly relays = new Map<string, Relay>();

  constructor(
    @Inject(LOG_RELAY_REPOSITORY) private readonly repo: LogRelayRepository,
    private readonly clock: Clock,
  ) {}

  attach(link: AgentLink): void {
    this.link = link;
  }

  /** Requests in flight (tests, diagnostics). */
  get active(): number {
    return this.relays.size;
  }

  async serve(req: FastifyRequest, reply: FastifyReply): Promise<void> {
    // Written by hand from here on: the agent's chunks go out as they come.
    reply.hijack();
    const res = reply.raw;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    const grant = m ? await this.repo.consume(hashToken(m[1]!), this.clock.now()) : undefined;
    if (!grant) return fail(res, 401, 'unauthorized', 'no valid output grant: an api replica issues one per request, usable once within 30 seconds');
    const { nodeName: node, rank } = grant;
    if (!this.link?.isConnected(node)) return fail(res, 503, 'unavailable', `output of rank ${rank} is on node ${node}, whose agent is not connected`);
    const requestId = randomUUID();
    const relay: Relay = { node, rank, res, started: false, paused: false, done: false };
    this.relays.set(requestId, relay);
    res.on('close', () => {
      if (relay.done) return;
      // The reader went away before the end: the agent stops reading for it.
      this.finish(requestId, relay);
      this.link?.send(node, { v: WIRE_VERSION, type: 'logs_close', requestId });
    });
    relay.timer = setTimeout(() => {
      if (relay.started || relay.done) return;
      this.finish(requestId, relay);
      this.link?.send(node, { v: WIRE_VERSION, type: 'logs_close', requestId });
      fail(res, 504, 'timeout', `the agent of node ${node} did not answer within ${FIRST_ANSWER_MS / 1000} seconds`);
    }, FIRST_ANSWER_MS);
    const sent = this.link.send(node, {
      v: WIRE_VERSION,
      type: 'logs_open',
      requestId,
      jobId: grant.jobId,
      follow: grant.follow,
      ...(grant.tail !== null ? { tail: grant.tail } : {}),
    });
    if (!sent) {
      this.finish(requestId, relay);
      fail(res, 503, 'unavailable', `output of rank ${rank} is on node ${node}, whose agent is not connected`);
    }
  }

  /** A logs_data or logs_end from `node`'s agent (an agent answers only its own requests). */
  message(node: string, msg: LogsMessage): void {
    const relay = this.relays.get(msg.requestId);
    if (!relay || relay.node !== node || relay.done) return; // closed meanwhile, or not its own
    const { res } = relay;
    if (msg.type === 'logs_data') {
      this.begin(relay);
      if (!res.write(Buffer.from(msg.data, 'base64')) && !relay.paused) {
        relay.paused = true;
        this.link?.send(node, { v: WIRE_VERSION, type: 'logs_pause', requestId: msg.requestId });
        res.once('drain', () => {
          relay.paused = false;
          if (!relay.done) this.link?.send(node, { v: WIRE_VERSION, type: 'logs_resume', requestId: msg.requestId });
        });
      }
      return;
    }
    this.finish(msg.requestId, relay);
    if (relay.started) {
      if (msg.error) res.destroy(); // cut off midway: the reader must not take it for the whole output
      else res.end();
      return;
    }
    if (!msg.error) {
      this.begin(relay);
      res.end();
    } else if (/^too many output requests/.test(msg.error)) fail(res, 503, 'unavailable', `node ${node}: ${msg.error}`);
    else fail(res, 404, 'not_found', `output of rank ${relay.rank} (node ${node}): ${msg.error}`);
  }

  /** The node's agent connection closed: what it was sending cannot complete. */
  closed(node: string): void {
    for (const [id, relay] of [...this.relays]) {
      if (relay.node !== node) continue;
      this.finish(id, relay);
      if (relay.started) relay.res.destroy();
      else fail(relay.res, 503, 'unavailable', `output of rank ${relay.rank} is on node ${node}, whose agent disconnected`);
    }
  }

  private begin(relay: Relay): void {
    if (relay.started) return;
    relay.started = true;
    clearTimeout(relay.timer);
    beginOutput(relay.res);
  }

  private finish(id: string, relay: Relay): void {
    relay.done = true;
    clearTimeout(relay.timer);
    this.relays.delete(id);
  }

  /** Records where api replicas reach this gateway process. */
  async announce(gatewayId: string, url: string): Promise<void> {
    await this.repo.setGatewayUrl(gatewayId, url, this.clock.now());
    this.log.log(`job output relay at ${url}${LOG_RELAY_PATH}`);
  }
}

function fail(res: ServerResponse, status: number, error: string, message: string): void {
  if (res.headersSent || res.destroyed) return;
  writeJson(res, status, { error, message });
}
