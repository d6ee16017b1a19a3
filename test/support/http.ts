/** What the end-to-end tests share: calling the API as a user would, and waiting for a state. */

export interface ApiResponse {
  status: number;
  body: any;
}

/** A JSON client for the running server at `base()` (read lazily: servers start in beforeAll). */
export function apiClient(base: () => string) {
  return async (token: string, method: string, path: string, body?: unknown): Promise<ApiResponse> => {
    const res = await fetch(`${base()}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };
}

/** Polls `f` until it returns something truthy; fails naming `what` after `ms`. */
export async function until<T>(what: string, f: () => Promise<T | undefined | false | null>, ms = 20_000, everyMs = 100): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
