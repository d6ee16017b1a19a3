import { Injectable } from '@nestjs/common';
import type { ApiError, LogsQuery } from '@nuri/contracts';
import { JobsRepository, LogRelayRepository, Principal } from '@nuri/db';
import { randomBytes } from 'node:crypto';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { FastifyReply } from 'fastify';
import type { ServerResponse } from 'node:http';
import { hashToken } from '../../auth/tokens';
import { Clock } from '../../core/clock';
import { beginOutput } from '../../core/raw-response';
import { ApiException, conflict, notFound } from '../common/errors';
import { JobsService } from './jobs.service';

/** A grant is written just before the gateway is called: it only has to outlive that call's start. */
const GRANT_TTL_MS = 30_000;
/** A gateway not seen alive for this long is taken for gone (it writes its row every second). */
const GATEWAY_STALE_MS = 10_000;
/** The internal endpoint of the gateway process (LogRelay). */
const RELAY_PATH = '/internal/v1/logs';

const unavailable = (message: string) => new ApiException(503, { error: 'unavailable', message });

/**
 * `GET /v1/jobs/:id/logs`: one rank's output, read by the node's agent and relayed by the
 * gateway process that holds its connection, which may not be this one. This replica checks
 * the caller and the job, writes a single-use grant (only its hash is stored) and calls that
 * gateway with it; the gateway consumes the grant and only then asks the agent. The bytes are
 * piped through as they come (TCP backpressure reaches the agent through the gateway), and
 * a reader that goes away closes the call, which makes the gateway tell the agent to stop.
 */
@Injectable()
export class LogsService {
  constructor(
    private readonly jobs: JobsService,
    private readonly jobRows: JobsRepository,
    private readonly relay: LogRelayRepository,
    private readonly clock: Clock,
  ) {}

  async stream(caller: Principal, ref: string, q: LogsQuery, reply: FastifyReply): Promise<void> {
    const res = reply.raw;
    const job = await this.jobs.resolve(caller, ref);
    const nodes = job.attempts > 0 ? (await this.jobRows.lastPlacement(job.id)).map((n) => n.name) : [];
    if (!nodes.length) throw conflict('no output yet: the job has not started');
    const node = nodes[q.rank];
    if (node === undefined) throw notFound(`no rank ${q.rank}: the job ran on ${nodes.length} node(s), ranks 0-${nodes.length - 1}`);
    const where = await this.relay.locate(node);
    const now = this.clock.now();
    const gone = `output of rank ${q.rank} is on node ${node}, whose agent is not connected`;
    if (!where || !where.connected || !where.gatewayUrl || !where.gatewaySeenAt || now.getTime() - where.gatewaySeenAt.getTime() > GATEWAY_STALE_MS) throw unavailable(gone);

    const token = randomBytes(32).toString('base64url');
    await this.relay.grant({ tokenHash: hashToken(token), jobId: job.id, nodeId: where.nodeId, rank: q.rank, tail: q.tail ?? null, follow: q.follow, expiresAt: new Date(now.getTime() + GRANT_TTL_MS) }, now);
    const upstream = await this.call(where.gatewayUrl, token, node, res);
    if (upstream.statusCode !== 200) throw await this.refusal(upstream, node);

    // Written by hand from here on (errors before this are the exception filter's JSON).
    reply.hijack();
    beginOutput(res);
    // An output cut off midway (the agent or the gateway went away) must not look complete:
    // the response is aborted, so the reader sees an incomplete transfer instead of an end.
    upstream.on('aborted', () => res.destroy());
    upstream.on('error', () => res.destroy());
    res.on('close', () => upstream.destroy());
    upstream.pipe(res);
  }

  /** Calls the gateway's relay; the call is dropped when the reader leaves before it answers. */
  private call(base: string, token: string, node: string, res: ServerResponse): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const url = new URL(RELAY_PATH, base);
      const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
      const r = send(url, { method: 'GET', headers: { authorization: `Bearer ${token}` } }, resolve);
      r.on('error', () => reject(unavailable(`output of node ${node} could not be read: the gateway holding its agent (${base}) is unreachable`)));
      // The response closes early only when the reader went away (it is not written yet).
      res.once('close', () => r.destroy());
      r.end();
    });
  }

  /** The gateway's refusal as this API's error (its JSON body says why; 401: a grant problem, ours). */
  private async refusal(upstream: IncomingMessage, node: string): Promise<ApiException> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of upstream) {
      size += (c as Buffer).length;
      if (size > 64 * 1024) break;
      chunks.push(c as Buffer);
    }
    let body: Partial<ApiError> = {};
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Partial<ApiError>;
    } catch {
      /* not JSON */
    }
    const status = upstream.statusCode ?? 502;
    if (status === 401 || status >= 500) {
      if (status === 503 || status === 504) return new ApiException(status, { error: body.error ?? 'unavailable', message: body.message ?? `node ${node}: unavailable` });
      return new ApiException(502, { error: 'bad_gateway', message: `the gateway holding node ${node}'s agent refused the relay (HTTP ${status})` });
    }
    return new ApiException(status, { error: body.error ?? 'error', message: body.message ?? `HTTP ${status}` });
  }
}
