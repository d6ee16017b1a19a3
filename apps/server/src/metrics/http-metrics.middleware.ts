import { Injectable, NestMiddleware } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { NuriMetrics } from '@nuri/metrics';
import type { NextFunction, Request, Response } from 'express';

/** Route label of a request no route matched (404s, scans): one series, whatever the path. */
export const UNMATCHED_ROUTE = 'unmatched';

/**
 * The route template a request matched (`/v1/jobs/:id`), never the raw path, so the
 * label set stays bounded. Express sets `req.route` when a route's path matched, before
 * Nest's guards run, so a request refused with 401 still has its template.
 */
export function routeTemplate(req: Request): string {
  const path = (req.route as { path?: unknown } | undefined)?.path;
  if (typeof path !== 'string') return UNMATCHED_ROUTE;
  return `${req.baseUrl ?? ''}${path}` || '/';
}

/**
 * Times every HTTP request, whatever ends it: the handler, a pipe's 400, the auth
 * guard's 401, the exception filter's 500, or the 404 of an unknown path. A middleware
 * rather than an interceptor because Nest runs guards before interceptors: an
 * interceptor never sees a request the guard refused. A client that hangs up before the
 * response is complete is recorded as 499 (nginx's "client closed request").
 *
 * Mounted with a plain `use()` on the HTTP adapter (see HttpMetricsInstaller), not with
 * Nest's MiddlewareConsumer, which mounts middleware as an express route for every method
 * (visible in the router's route table and in `req.route` of unmatched requests).
 */
@Injectable()
export class HttpMetricsMiddleware implements NestMiddleware {
  constructor(private readonly metrics: NuriMetrics) {}

  use(req: Request, res: Response, next: NextFunction): void {
    const start = process.hrtime.bigint();
    let done = false;
    const end = (status: number) => {
      if (done) return;
      done = true;
      this.metrics.observeHttpRequest(req.method, routeTemplate(req), status, Number(process.hrtime.bigint() - start) / 1e9);
    };
    res.once('finish', () => end(res.statusCode));
    res.once('close', () => end(res.writableFinished ? res.statusCode : 499));
    next();
  }
}

/**
 * Mounts HttpMetricsMiddleware on the HTTP adapter when the module is instantiated, which
 * is before Nest registers any route (so it runs first for every request). Processes
 * without an HTTP adapter (none today) simply have no request metrics.
 */
@Injectable()
export class HttpMetricsInstaller {
  constructor(adapterHost: HttpAdapterHost, middleware: HttpMetricsMiddleware) {
    adapterHost.httpAdapter?.use((req: Request, res: Response, next: NextFunction) => middleware.use(req, res, next));
  }
}
