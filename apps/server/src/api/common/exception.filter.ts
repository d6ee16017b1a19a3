import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Logger } from '@nestjs/common';
import type { ApiError } from '@nuri/contracts';
import type { FastifyReply } from 'fastify';
import { writeJson } from '../../core/raw-response';
import { ApiException } from './errors';
import { BODY_LIMIT_BYTES } from './limits';

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
    const reply = host.switchToHttp().getResponse<FastifyReply>();
    const [status, body] = this.describe(exception);
    const res = reply.raw;
    if (res.headersSent || res.writableEnded) return;
    // A handler that took the response over (reply.hijack(): streamed output) and failed
    // before writing it: Fastify would send nothing, so the error is written by hand.
    if (reply.sent) writeJson(res, status, body);
    else void reply.code(status).send(body);
  }

  private describe(e: unknown): [number, ApiError] {
    if (e instanceof ApiException) return [e.getStatus(), e.body];
    if (e instanceof HttpException) {
      const status = e.getStatus();
      const r = e.getResponse();
      const message = typeof r === 'string' ? r : typeof (r as { message?: unknown }).message === 'string' ? (r as { message: string }).message : e.message;
      if (status >= 500) this.log.error(e.stack ?? String(e));
      // Nest's own 400s and 413s are Fastify's refusals of a body (not JSON, empty, too large).
      if (status === 400) return [400, { error: 'invalid_request', message: `the body is not valid JSON: ${message}`, issues: [{ field: '(body)', rule: 'valid JSON object' }] }];
      if (status === 413) return [413, { error: 'payload_too_large', message: `the body is larger than the ${BODY_LIMIT_BYTES / 1024 / 1024} MiB the API takes` }];
      return [status, { error: NAMES[status] ?? (status >= 500 ? 'internal' : 'error'), message: status >= 500 ? 'internal error' : message }];
    }
    this.log.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
    return [500, { error: 'internal', message: 'internal error' }];
  }
}
