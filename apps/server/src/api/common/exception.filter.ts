import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Logger } from '@nestjs/common';
import type { ApiError } from '@nuri/contracts';
import type { Response } from 'express';
import { ApiException } from './errors';

const NAMES: Record<number, string> = {
  400: 'invalid_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  409: 'conflict',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
};

/**
 * Every error leaves as JSON in the ApiError shape. Unexpected errors are logged here and
 * answered 500 with no detail: stack traces and SQL never reach the caller.
 */
@Catch()
export class ApiExceptionFilter implements ExceptionFilter {
  private readonly log = new Logger('api');

  catch(exception: unknown, host: ArgumentsHost): void {
    if (host.getType() !== 'http') throw exception;
    const res = host.switchToHttp().getResponse<Response>();
    const [status, body] = this.describe(exception);
    if (res.headersSent) return;
    res.status(status).json(body);
  }

  private describe(e: unknown): [number, ApiError] {
    if (e instanceof ApiException) return [e.getStatus(), e.body];
    if (e instanceof HttpException) {
      const status = e.getStatus();
      const r = e.getResponse();
      const message = typeof r === 'string' ? r : typeof (r as { message?: unknown }).message === 'string' ? (r as { message: string }).message : e.message;
      if (status >= 500) this.log.error(e.stack ?? String(e));
      // Nest's own 400s are body-parser failures: the body is not JSON (or not an object).
      if (status === 400) return [400, { error: 'invalid_request', message: `the body is not valid JSON: ${message}`, issues: [{ field: '(body)', rule: 'valid JSON object' }] }];
      return [status, { error: NAMES[status] ?? (status >= 500 ? 'internal' : 'error'), message: status >= 500 ? 'internal error' : message }];
    }
    // body-parser errors (malformed JSON, body too large) carry a status and an `expose` flag.
    const bp = e as { status?: unknown; expose?: unknown; type?: unknown; message?: unknown };
    if (typeof bp?.status === 'number' && bp.status >= 400 && bp.status < 500 && bp.expose === true) {
      const message = bp.type === 'entity.parse.failed' ? 'the body is not valid JSON' : String(bp.message);
      return [bp.status, { error: NAMES[bp.status] ?? 'invalid_request', message, ...(bp.status === 400 ? { issues: [{ field: '(body)', rule: message }] } : {}) }];
    }
    this.log.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
    return [500, { error: 'internal', message: 'internal error' }];
  }
}
