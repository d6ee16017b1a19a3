import { createHmac } from 'node:crypto';

/** Node names and agent tokens of the gateway bench, derived from a per-run seed (no token file). */
export const tokenFor = (seed: string, name: string) => `nuri_node_${createHmac('sha256', seed).update(name).digest('base64url')}`;
export const nodeName = (i: number) => `bench-${String(i).padStart(5, '0')}`;
