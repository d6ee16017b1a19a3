import type { ChildProcess } from 'node:child_process';
import { Client } from 'pg';
import { testServerUrl } from '../libs/db/src/testing';

/** The p-th percentile (0–100) of xs, nearest rank; NaN for no samples. */
export function percentile(xs: readonly number[], p: number): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

/** A throw-away database on the real PostgreSQL server (DATABASE_URL or the local default). */
export async function scratchDatabase(name: string): Promise<{ url: string; drop(): Promise<void> }> {
  const serverUrl = testServerUrl();
  const admin = new Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`create database ${name}`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      await admin.query(`drop database if exists ${name} with (force)`).catch(() => undefined);
      await admin.end();
    },
  };
}

/**
 * Sends `msg` to a forked helper process (a load generator) and waits for its message whose
 * `op` is `reply`; fails naming `who` after `timeoutMs`.
 */
export function ask<T>(gen: ChildProcess, msg: object, reply: string, who: string, timeoutMs = 180_000): Promise<T> {
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`${who}: no ${reply} in ${timeoutMs} ms`)), timeoutMs);
    const on = (m: any) => {
      if (m.op !== reply) return;
      gen.off('message', on);
      clearTimeout(timer);
      ok(m as T);
    };
    gen.on('message', on);
    gen.send(msg);
  });
}
