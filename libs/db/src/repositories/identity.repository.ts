import type { Db } from './tenants.repository';

export interface Principal {
  userId: string;
  userName: string;
  role: 'researcher' | 'tenant-admin' | 'operator';
  tenantId: string | null;
  tenantName: string | null;
}

export interface UserRecord {
  id: string;
  name: string;
  role: Principal['role'];
  tenantId: string | null;
  tenantName: string | null;
  createdAt: Date;
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

  async createToken(t: { userId: string; hash: string; description: string; expiresAt: Date | null }): Promise<{ id: string; createdAt: Date }> {
    return this.db
      .insertInto('api_tokens')
      .values({ user_id: t.userId, token_hash: t.hash, description: t.description, expires_at: t.expiresAt })
      .returning(['id', 'created_at as createdAt'])
      .executeTakeFirstOrThrow();
  }

  async listTokens(userId: string) {
    return this.db
      .selectFrom('api_tokens')
      .select(['id', 'description', 'created_at as createdAt', 'expires_at as expiresAt'])
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

  async principalByTokenHash(hash: string, now: Date): Promise<Principal | undefined> {
    return this.db
      .selectFrom('api_tokens')
      .innerJoin('users', 'users.id', 'api_tokens.user_id')
      .leftJoin('tenants', 'tenants.id', 'users.tenant_id')
      .select([
        'users.id as userId',
        'users.name as userName',
        'users.role as role',
        'users.tenant_id as tenantId',
        'tenants.name as tenantName',
      ])
      .where('api_tokens.token_hash', '=', hash)
      .where('api_tokens.revoked_at', 'is', null)
      .where((eb) => eb.or([eb('api_tokens.expires_at', 'is', null), eb('api_tokens.expires_at', '>', now)]))
      .executeTakeFirst();
  }
}
