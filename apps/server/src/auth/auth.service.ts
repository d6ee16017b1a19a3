import { Injectable } from '@nestjs/common';
import { IdentityRepository, Principal, TokenRefusal } from '@nuri/db';
import { Clock } from '../core/clock';
import { hashToken, newApiToken } from './tokens';

export const BOOTSTRAP_OPERATOR = 'admin';

/** Tokens in, principals out. The only place a token's plaintext exists is the response that creates it. */
@Injectable()
export class AuthService {
  constructor(
    private readonly identity: IdentityRepository,
    private readonly clock: Clock,
  ) {}

  /** The principal of a bearer token, or undefined for an unknown, expired or revoked one, or one of a disabled user. */
  async authenticate(token: string): Promise<Principal | undefined> {
    const r = await this.check(token);
    return 'principal' in r ? r.principal : undefined;
  }

  /** As `authenticate`, saying why a token is refused. */
  async check(token: string): Promise<{ principal: Principal } | { refused: TokenRefusal }> {
    if (!token || token.length > 512) return { refused: 'invalid' };
    return this.identity.authenticateHash(hashToken(token), this.clock.now());
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
