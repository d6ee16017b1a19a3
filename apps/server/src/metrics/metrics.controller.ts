import { Controller, Get, Inject, Req, Res } from '@nestjs/common';
import type { ServerConfig } from '@nuri/config';
import { gzipExposition, NuriMetrics } from '@nuri/metrics';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { createHash, timingSafeEqual } from 'node:crypto';
import { invalidField } from '../api/common/errors';
import { CONFIG } from '../core/core.module';

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/**
 * Whether an Authorization header carries `Bearer <expected>`. Both sides are hashed first, so
 * the comparison takes the same time whatever the length or content of what was sent.
 */
export function metricsAuthorized(header: string | undefined, expected: string): boolean {
  const m = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  // Compare even when the header is malformed, so a refusal takes as long either way.
  const ok = timingSafeEqual(digest(m?.[1] ?? ''), digest(expected));
  return m !== null && ok;
}

/**
 * Prometheus scrape endpoint, in every process (`?name=<family>`, repeatable: only those
 * families of the registry's). The exposition names every tenant's jobs, so
 * with NURI_METRICS_TOKEN set it wants `Authorization: Bearer <that token>` (Prometheus'
 * `authorization: {credentials_file: …}`); unset, it is open, for a scraper on the operator network.
 */
@Controller()
export class MetricsController {
  constructor(
    private readonly metrics: NuriMetrics,
    @Inject(CONFIG) private readonly config: ServerConfig,
  ) {}

  @Get('metrics')
  async scrape(@Req() req: FastifyRequest, @Res() reply: FastifyReply): Promise<void> {
    const token = this.config.metricsToken;
    if (token && !metricsAuthorized(req.headers.authorization, token)) {
      await reply
        .code(401)
        .header('WWW-Authenticate', 'Bearer realm="metrics"')
        .send({ error: 'unauthorized', message: 'GET /metrics needs Authorization: Bearer <NURI_METRICS_TOKEN>' });
      return;
    }
    // ?name=<family> (repeatable): only those families, for a poller that wants one counter
    // (the whole exposition at 4,000 nodes is ~15 MB and takes a few hundred ms to render).
    const q = (req.query as Record<string, string | string[] | undefined>).name;
    const names = q === undefined ? null : (Array.isArray(q) ? q : [q]).map(String);
    let text: Buffer;
    try {
      text = names ? await this.metrics.familiesBuffer(names) : await this.metrics.metricsBuffer();
    } catch (e) {
      throw e instanceof RangeError ? invalidField('name', e.message) : e;
    }
    // Prometheus asks for gzip: at 32,000 GPUs that is ~7 MB on the wire instead of ~79 MB.
    const gzip = prefersGzip(req.headers['accept-encoding']);
    const body = gzip ? await gzipExposition(text) : text;
    reply.code(200).type(this.metrics.contentType).header('Vary', 'Accept-Encoding');
    if (gzip) reply.header('Content-Encoding', 'gzip');
    await reply.send(body);
  }
}

/**
 * Whether an Accept-Encoding header takes gzip at least as gladly as no encoding, as Express's
 * `acceptsEncodings('gzip', 'identity')` decided: gzip (or `*`) with a nonzero q; identity,
 * unless named, at the lowest q the header gives (at most 1); a tie goes to gzip.
 */
export function prefersGzip(header: string | undefined): boolean {
  if (!header) return false;
  const q: Record<string, number> = {};
  for (const part of header.split(',')) {
    const [name, ...params] = part.trim().toLowerCase().split(';');
    if (!name) continue;
    const qp = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    const v = qp ? Number(qp.slice(2)) : 1;
    q[name] = Number.isFinite(v) ? Math.min(1, Math.max(0, v)) : 0;
  }
  const gzip = q.gzip ?? q['*'] ?? 0;
  const identity = q.identity ?? Math.min(1, ...Object.values(q));
  return gzip > 0 && gzip >= identity;
}
