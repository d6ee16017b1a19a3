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
