import { createHmac, randomUUID } from 'node:crypto';

/** Node names and agent tokens of the gateway bench, derived from a per-run seed (no token file). */
export const tokenFor = (seed: string, name: string) => `nuri_node_${createHmac('sha256', seed).update(name).digest('base64url')}`;
export const nodeName = (i: number) => `bench-${String(i).padStart(5, '0')}`;

/** What every simulated agent starts with: its index, name, token and a fresh stream id. */
export const agentIdentity = (seed: string, i: number) => ({ i, name: nodeName(i), token: tokenFor(seed, nodeName(i)), stream: randomUUID().replace(/-/g, '').slice(0, 24) });

/**
 * Starts `n` simulated agents, 100 at a time with a pause between (the generator's own loop
 * must breathe), then waits up to 120 s until `connected()` says all are: how many, and when.
 */
export async function connectFleet(n: number, start: (i: number) => void, connected: () => number): Promise<{ connected: number; ms: number }> {
  const t0 = Date.now();
  for (let i = 0; i < n; i++) {
    start(i);
    if (i % 100 === 99) await new Promise((r) => setTimeout(r, 20));
  }
  while (connected() < n && Date.now() - t0 < 120_000) await new Promise((r) => setTimeout(r, 100));
  return { connected: connected(), ms: Date.now() - t0 };
}
