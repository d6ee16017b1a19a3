/**
 * A thin HTTP client for the Nuri API on node:http (global fetch costs its start-up on every
 * run of the CLI): the token travels as a bearer header, errors keep their field and rule.
 */
import type { IncomingMessage } from 'node:http';
import { ApiError, UnreachableError } from './errors';

/** `NURI_URL` with or without a trailing `/v1` and slashes: the server's root, to which `/v1/...` is added. */
export function apiRoot(url: string): string {
  return url.trim().replace(/\/+$/, '').replace(/\/v1$/, '').replace(/\/+$/, '');
}

export class NuriClient {
  readonly root: string;
  constructor(
    url: string,
    private readonly token: string,
  ) {
    this.root = apiRoot(url);
  }

  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.open(method, path, body);
    const text = await readAll(res);
    if ((res.statusCode ?? 500) >= 400) throw apiError(res.statusCode ?? 500, text);
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /** A GET whose body is handed over as it arrives (logs), until the server ends it or `signal` aborts. */
  async stream(path: string, onChunk: (chunk: Buffer) => void, signal?: AbortSignal): Promise<void> {
    const res = await this.open('GET', path, undefined, signal);
    if ((res.statusCode ?? 500) >= 400) throw apiError(res.statusCode ?? 500, await readAll(res));
    await new Promise<void>((resolve, reject) => {
      res.on('data', onChunk);
      res.on('end', resolve);
      res.on('error', (e) => (signal?.aborted ? resolve() : reject(e)));
      res.on('close', () => resolve());
    });
  }

  private open(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<IncomingMessage> {
    const url = new URL(this.root + path);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    // https only when asked for: the http module alone is what a plain run loads.
    // (https's request takes http's arguments and more: used as http's here.)
    const mod = (url.protocol === 'https:' ? process.getBuiltinModule('node:https') : process.getBuiltinModule('node:http')) as typeof import('node:http');
    return new Promise((resolve, reject) => {
      const req = mod.request(
        url,
        {
          method,
          signal,
          headers: {
            authorization: `Bearer ${this.token}`,
            ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }),
          },
        },
        resolve,
      );
      req.on('error', (e: NodeJS.ErrnoException) => reject(signal?.aborted ? e : new UnreachableError(this.root, e.message || e.code || 'no answer')));
      req.end(payload);
    });
  }
}

function readAll(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', reject);
  });
}

function apiError(status: number, text: string): ApiError {
  try {
    return new ApiError(status, JSON.parse(text));
  } catch {
    return new ApiError(status, { message: text.trim() || `HTTP ${status}` });
  }
}
