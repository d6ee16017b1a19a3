import { ArgumentsHost, BadRequestException, Logger, NotFoundException, PayloadTooLargeException } from '@nestjs/common';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { conflict } from './errors';
import { ApiExceptionFilter } from './exception.filter';
import { toIssues } from './zod-pipe';

function respond(e: unknown): { status: number; body: any } {
  const out = { status: 0, body: undefined as any };
  const res = { sent: false, raw: { headersSent: false, writableEnded: false }, code: (s: number) => ((out.status = s), res), send: (b: unknown) => (out.body = b) };
  const host = { getType: () => 'http', switchToHttp: () => ({ getResponse: () => res }) } as unknown as ArgumentsHost;
  new ApiExceptionFilter().catch(e, host);
  return out;
}

describe('ApiExceptionFilter', () => {
  afterEach(() => vi.restoreAllMocks());

  it('answers unexpected errors 500 without their message or stack', () => {
    vi.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    const r = respond(new Error('relation "jobs" does not exist at /srv/x.js:1'));
    expect(r).toEqual({ status: 500, body: { error: 'internal', message: 'internal error' } });
  });

  it('passes API errors through and names Nest HTTP errors', () => {
    expect(respond(conflict('job is already completed'))).toEqual({ status: 409, body: { error: 'conflict', message: 'job is already completed' } });
    expect(respond(new NotFoundException('Cannot GET /x'))).toEqual({ status: 404, body: { error: 'not_found', message: 'Cannot GET /x' } });
  });

  it("says what was wrong with a body Fastify refused before any handler (Nest hands it on as an HttpException)", () => {
    expect(respond(new BadRequestException("Body is not valid JSON but content-type is set to 'application/json'"))).toEqual({
      status: 400,
      body: { error: 'invalid_request', message: expect.stringMatching(/^the body is not valid JSON: /), issues: [{ field: '(body)', rule: 'valid JSON object' }] },
    });
    expect(respond(new PayloadTooLargeException('Request body is too large'))).toEqual({ status: 413, body: { error: 'payload_too_large', message: 'the body is larger than the 2 MiB the API takes' } });
  });

  it('writes the error by hand for a handler that took the response over and failed before writing it', () => {
    const written: unknown[] = [];
    const raw = { headersSent: false, writableEnded: false, writeHead: (s: number, h: unknown) => (written.push(s, h), raw), end: (b: string) => written.push(JSON.parse(b)) };
    const res = { sent: true, raw, code: () => res, send: () => written.push('sent through Fastify') };
    const host = { getType: () => 'http', switchToHttp: () => ({ getResponse: () => res }) } as unknown as ArgumentsHost;
    new ApiExceptionFilter().catch(conflict('no output yet'), host);
    expect(written).toEqual([409, { 'Content-Type': 'application/json; charset=utf-8' }, { error: 'conflict', message: 'no output yet' }]);
  });

  it('writes nothing once the response has begun (a stream cut off midway)', () => {
    const sent: unknown[] = [];
    const res = { sent: true, raw: { headersSent: true, writableEnded: false }, code: () => res, send: (b: unknown) => sent.push(b) };
    const host = { getType: () => 'http', switchToHttp: () => ({ getResponse: () => res }) } as unknown as ArgumentsHost;
    vi.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    new ApiExceptionFilter().catch(new Error('late'), host);
    expect(sent).toEqual([]);
  });
});

describe('toIssues', () => {
  it('names nested fields with dotted paths and each unknown key', () => {
    const s = z.object({ a: z.object({ b: z.array(z.number().max(3)) }).strict() }).strict();
    const r = s.safeParse({ a: { b: [1, 9], x: 1 }, y: 2 });
    expect(toIssues(r.error!)).toEqual([
      { field: 'a.b.1', rule: expect.stringMatching(/<=3/) },
      { field: 'a.x', rule: 'unknown field' },
      { field: 'y', rule: 'unknown field' },
    ]);
  });
});
