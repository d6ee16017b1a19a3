import { Injectable } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { NuriMetrics } from '@nuri/metrics';
import type { FastifyInstance, FastifyRequest } from 'fastify';

/** Route label of a request no route matched (404s, scans): one series, whatever the path. */
export const UNMATCHED_ROUTE = 'unmatched';

/**
 * The route template a request matched (`/v1/jobs/:id`), never the raw path, so the label
 * set stays bounded. Fastify routes a request before any hook or guard runs, so a request
 * refused with 401 still has its template; the not-found handler has none.
 */
export function routeTemplate(req: Pick<FastifyRequest, 'routeOptions'>): string {
  const url = req.routeOptions?.url;
  return typeof url === 'string' && url ? url : UNMATCHED_ROUTE;
}

/**
 * Times every HTTP request, whatever ends it: the handler, a pipe's 400, the auth guard's
 * 401, the exception filter's 500, or the 404 of an unknown path. A Fastify `onRequest` hook
 * rather than an interceptor because Nest runs guards before interceptors: an interceptor
 * never sees a request the guard refused. A client that hangs up before the response is
 * complete is recorded as 499 (nginx's "client closed request"). Installed when the module
 * is instantiated, before Nest registers any route, so it runs first for every request.
 */
@Injectable()
export class HttpMetricsHooks {
  constructor(adapterHost: HttpAdapterHost, metrics: NuriMetrics) {
    const fastify = adapterHost.httpAdapter?.getInstance<FastifyInstance>();
    fastify?.addHook('onRequest', (req, reply, done) => {
      const start = process.hrtime.bigint();
      const res = reply.raw;
      let ended = false;
      const end = (status: number) => {
        if (ended) return;
        ended = true;
        metrics.observeHttpRequest(req.method, routeTemplate(req), status, Number(process.hrtime.bigint() - start) / 1e9);
      };
      res.once('finish', () => end(res.statusCode));
      res.once('close', () => end(res.writableFinished ? res.statusCode : 499));
      done();
    });
  }
}
