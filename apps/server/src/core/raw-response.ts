import type { ServerResponse } from 'node:http';

/**
 * Writing on the raw response, for a reply taken over with `reply.hijack()` (job output is
 * streamed as it comes): Fastify sends nothing for such a reply, errors included.
 */

/** An answer of JSON, whole. */
export function writeJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8' }).end(JSON.stringify(body));
}

/** The start of a job's output: 200, plain text, never cached or sniffed, headers sent at once. */
export function beginOutput(res: ServerResponse): void {
  res.statusCode = 200;
  res.setHeader('Content-Type', 'text/plain; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.flushHeaders();
}
