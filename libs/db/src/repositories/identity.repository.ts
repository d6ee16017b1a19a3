import { sql } from 'kysely';
import type { Db } from './tenants.repository';

export interface Principal {
  userId: string;
  userName: string;
  role: 'researcher' | 'tenant-admin' | 'operator';
  tenantId: string | null;
  tenantName: string | null;
  /** The token the caller authenticated with, and when it expires (null: never). */
  tokenId: string;
  tokenExpiresAt: Date | null;
}

/** Why a token does not authenticate: unknown, expired or revoked (one answer for all three), or its user is disabled. */
export type TokenRefusal = 'invalid' | 'user_disabled';

export interface UserRecord {
  id: string;
  name: string;
  role: Principal['role'];
  tenantId: string | null;
  tenantName: string | null;
  createdAt: Date;
  /** Set while the user is disabled. */
  disabledAt: Date | null;
}

/** Users and their API tokens. Tokens are stored as hashes only. */
export class IdentityRepository {
  constructor(private readonly db: Db) {}

  async createUser(u: { name: string; tenantId: string | null; role: Principal['role'] }): Promise<string> {
    const r = await this.db
      .insertInto('users')
      .values({ name: u.name, tenant_id: u.tenantId, role: u.role })
      .returning('id')
      .executeTakeFirstOrThrow();
    return r.id;
  }

  private usersQuery() {
    return this.db
      .selectFrom('users')
      .leftJoin('tenants', 'tenants.id', 'users.tenant_id')
      .select([
        'users.id as id',
        'users.name as name',
        'users.role as role',
        'users.tenant_id as tenantId',
        'tenants.name as tenantName',
        'users.created_at as createdAt',
        'users.disabled_at as disabledAt',
      ]);
  }

  async findUser(name: string): Promise<UserRecord | undefined> {
    return this.usersQuery().where('users.name', '=', name).executeTakeFirst();
  }

  async findUserById(id: string): Promise<UserRecord | undefined> {
    return this.usersQuery().where('users.id', '=', id).executeTakeFirst();
  }

  /** A token row by its hash, revoked or not (idempotent bootstrap of a known token). */
  async findTokenByHash(hash: string): Promise<{ id: string; userId: string; revokedAt: Date | null } | undefined> {
    return this.db
      .selectFrom('api_tokens')
      .select(['id', 'user_id as userId', 'revoked_at as revokedAt'])
      .where('token_hash', '=', hash)
      .executeTakeFirst();
  }

  async listUsers(tenantId?: string): Promise<UserRecord[]> {
    let q = this.usersQuery().orderBy('users.name');
    if (tenantId) q = q.where('users.tenant_id', '=', tenantId);
    return q.execute();
  }

  /**
   * `issuedBy`: the token whose caller creates this one (a revoke with cascade takes it along);
   * omitted for tokens the server makes itself.
   */
  async createToken(t: { userId: string; hash: string; description: string; expiresAt: Date | null; issuedBy?: string | null }): Promise<{ id: string; createdAt: Date }> {
    return this.db
      .insertInto('api_tokens')
      .values({ user_id: t.userId, token_hash: t.hash, description: t.description, expires_at: t.expiresAt, issued_by: t.issuedBy ?? null })
      .returning(['id', 'created_at as createdAt'])
      .executeTakeFirstOrThrow();
  }

  async listTokens(userId: string) {
    return this.db
      .selectFrom('api_tokens')
      .select(['id', 'description', 'created_at as createdAt', 'expires_at as expiresAt', 'issued_by as issuedBy'])
      .where('user_id', '=', userId)
      .where('revoked_at', 'is', null)
      .orderBy('created_at')
      .execute();
  }

  async revokeToken(id: string, userIds: string[] | null, now: Date): Promise<boolean> {
    let q = this.db.updateTable('api_tokens').set({ revoked_at: now }).where('id', '=', id).where('revoked_at', 'is', null);
    if (userIds) q = q.where('user_id', 'in', userIds.length ? userIds : ['00000000-0000-0000-0000-000000000000']);
    const r = await q.executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  }

  async tokenOwner(tokenId: string) {
    return this.db
      .selectFrom('api_tokens')
      .innerJoin('users', 'users.id', 'api_tokens.user_id')
      .select(['users.id as userId', 'users.tenant_id as tenantId'])
      .where('api_tokens.id', '=', tokenId)
      .executeTakeFirst();
  }

  /**
   * Revokes a token and, with `cascade`, every live token created with it, and theirs in turn
   * (one statement: a recursive walk over `issued_by`, through tokens already revoked too, so an
   * earlier revoke of a middle token hides none below it). Returns the ids revoked now, the
   * token's own first when it was live; empty when there was nothing left to revoke.
   */
  async revokeTokenTree(id: string, cascade: boolean, now: Date): Promise<string[]> {
    if (!cascade) return (await this.revokeToken(id, null, now)) ? [id] : [];
    const r = await sql<{ id: string }>`
      with recursive tree(id) as (
        select id from api_tokens where id = ${id}
        union
        select t.id from api_tokens t join tree on t.issued_by = tree.id
      )
      update api_tokens set revoked_at = ${now} where id in (select id from tree) and revoked_at is null returning id`.execute(this.db);
    const ids = r.rows.map((x) => x.id);
    return ids.includes(id) ? [id, ...ids.filter((x) => x !== id)] : ids;
  }

  /** Disables (`at`) or enables (null) a user. Disabling keeps the first time; returns whether the user exists. */
  async setUserDisabled(userId: string, at: Date | null): Promise<boolean> {
    let q = this.db.updateTable('users').set({ disabled_at: at }).where('id', '=', userId);
    // Disabling twice keeps when it first happened.
    if (at) q = q.where('disabled_at', 'is', null);
    await q.executeTakeFirst();
    return (await this.findUserById(userId)) !== undefined;
  }

  /**
   * The principal of a live token (unrevoked, unexpired, its user enabled), or why there is
   * none. A disabled user's tokens are refused however they were made.
   */
  async principalByTokenHash(hash: string, now: Date): Promise<Principal | undefined> {
    const r = await this.authenticateHash(hash, now);
    return 'principal' in r ? r.principal : undefined;
  }

  async authenticateHash(hash: string, now: Date): Promise<{ principal: Principal } | { refused: TokenRefusal }> {
    const row = await this.db
      .selectFrom('api_tokens')
      .innerJoin('users', 'users.id', 'api_tokens.user_id')
      .leftJoin('tenants', 'tenants.id', 'users.tenant_id')
      .select([
        'users.id as userId',
        'users.name as userName',
        'users.role as role',
        'users.tenant_id as tenantId',
        'tenants.name as tenantName',
        'users.disabled_at as disabledAt',
        'api_tokens.id as tokenId',
        'api_tokens.expires_at as tokenExpiresAt',
      ])
      .where('api_tokens.token_hash', '=', hash)
      .where('api_tokens.revoked_at', 'is', null)
      .where((eb) => eb.or([eb('api_tokens.expires_at', 'is', null), eb('api_tokens.expires_at', '>', now)]))
      .executeTakeFirst();
    if (!row) return { refused: 'invalid' };
    if (row.disabledAt) return { refused: 'user_disabled' };
    const { disabledAt: _, ...principal } = row;
    return { principal };
  }
}
