import { createHash, randomBytes } from 'node:crypto';

/** A user's API token: `nuri_` and 32 random bytes in base64url (43 characters). */
export const newApiToken = (): string => `nuri_${randomBytes(32).toString('base64url')}`;

/** A node agent's token: `nuri_node_` and 32 random bytes in base64url. */
export const newAgentToken = (): string => `nuri_node_${randomBytes(32).toString('base64url')}`;

/** Tokens are stored only as their sha256, hex. 32 random bytes need no salt or slow hash. */
export const hashToken = (token: string): string => createHash('sha256').update(token, 'utf8').digest('hex');
