import { Inject, Injectable } from '@nestjs/common';
import type { ServerConfig } from '@nuri/config';
import { IdentityRepository, Principal, TokenRefusal } from '@nuri/db';
import { Clock } from '../core/clock';
import { CONFIG } from '../core/core.module';
import { hashToken, newApiToken } from './tokens';

export const BOOTSTRAP_OPERATOR = 'admin';

/** The most tokens the check cache holds: past it, it starts again empty. */
const CACHE_MAX = 10_000;

/**
 * Tokens in, principals out. The only place a token's plaintext exists is the response that creates it.
 * A successful check is reused for NURI_AUTH_CACHE_MS (by hash; expiry still checked each time),
 * which saves a query on every request. `forgetAll` (called by the guard after any change to
 * users or tokens through this replica) makes a revoke or a disable take effect here at once;
 * on other replicas within that bound. Refusals are never cached.
 */
@Injectable()
export class AuthService {
  private readonly ttlMs: number;
  private readonly cache = new Map<string, { at: number; principal: Principal }>();

  constructor(
    private readonly identity: IdentityRepository,
    private readonly clock: Clock,
    @Inject(CONFIG) config: Pick<ServerConfig, 'authCacheMs'>,
  ) {
    this.ttlMs = config.authCacheMs;
  }

  /** Drops every cached check: the next request of each token reads the database again. */
  forgetAll(): void {
    this.cache.clear();
  }

  /** The principal of a bearer token, or undefined for an unknown, expired or revoked one, or one of a disabled user. */
  async authenticate(token: string): Promise<Principal | undefined> {
    const r = await this.check(token);
    return 'principal' in r ? r.principal : undefined;
  }

  /** As `authenticate`, saying why a token is refused. */
  async check(token: string): Promise<{ principal: Principal } | { refused: TokenRefusal }> {
    if (!token || token.length > 512) return { refused: 'invalid' };
    const hash = hashToken(token);
    const now = this.clock.now();
    const hit = this.cache.get(hash);
    // Monotonic time for the bound: the injected clock may stand still (tests) or jump.
    const t = performance.now();
    if (hit && t - hit.at < this.ttlMs && (!hit.principal.tokenExpiresAt || hit.principal.tokenExpiresAt > now)) return { principal: hit.principal };
    const r = await this.identity.authenticateHash(hash, now);
    if (this.ttlMs > 0 && 'principal' in r) {
      if (this.cache.size >= CACHE_MAX) this.cache.clear();
      this.cache.set(hash, { at: t, principal: r.principal });
    } else this.cache.delete(hash);
    return r;
  }

  /**
   * Issues a new API token for a user; returns its plaintext once, and the stored row.
   * `issuedBy`: the token of the caller who asked for it (omitted for tokens the server makes).
   */
  async issueToken(
    userId: string,
    description: string,
    expiresAt: Date | null,
    issuedBy: string | null = null,
  ): Promise<{ token: string; id: string; createdAt: Date; expiresAt: Date | null; issuedBy: string | null }> {
    const token = newApiToken();
    const row = await this.identity.createToken({ userId, hash: hashToken(token), description, expiresAt, issuedBy });
    return { token, id: row.id, createdAt: row.createdAt, expiresAt, issuedBy };
  }

  /**
   * Makes sure user `admin` exists as an operator and that `token` authenticates as them.
   * Idempotent: calling it again with the same token changes nothing; a revoked bootstrap
   * token stays revoked. Throws if `admin` exists with another role.
   */
  async ensureBootstrapOperator(token: string): Promise<void> {
    let admin = await this.identity.findUser(BOOTSTRAP_OPERATOR);
    if (!admin) {
      try {
        await this.identity.createUser({ name: BOOTSTRAP_OPERATOR, tenantId: null, role: 'operator' });
      } catch (e) {
        if ((e as { code?: string }).code !== '23505') throw e; // another replica created it
      }
      admin = await this.identity.findUser(BOOTSTRAP_OPERATOR);
    }
    if (!admin || admin.role !== 'operator') throw new Error(`user ${BOOTSTRAP_OPERATOR} exists and is not an operator`);
    const hash = hashToken(token);
    const existing = await this.identity.findTokenByHash(hash);
    if (existing) {
      if (existing.userId !== admin.id) throw new Error('the bootstrap token belongs to another user');
      return;
    }
    try {
      await this.identity.createToken({ userId: admin.id, hash, description: 'bootstrap (NURI_BOOTSTRAP_TOKEN)', expiresAt: null });
    } catch (e) {
      if ((e as { code?: string }).code !== '23505') throw e;
    }
  }
}
