import { Injectable } from '@nestjs/common';
import { CreateUser, ListUsersQuery, UserView } from '@nuri/contracts';
import { IdentityRepository, Principal, TenantsRepository, UserRecord } from '@nuri/db';
import { Clock } from '../../core/clock';
import { isOperator } from '../../auth/principal';
import { forbidden, notFound, uniqueOr409 } from '../common/errors';
import { userView } from '../common/views';

/** Whether the caller may see this user at all: operators everyone, others their own tenant's users. */
export const seesUser = (caller: Principal, u: Pick<UserRecord, 'id' | 'tenantId'>) =>
  isOperator(caller) || u.id === caller.userId || (u.tenantId !== null && u.tenantId === caller.tenantId);

/**
 * Whether the caller manages this user (creates and revokes their tokens, disables and enables
 * them): themselves; operators anyone; tenant admins the researchers of their tenant.
 */
export const managesUser = (caller: Principal, u: Pick<UserRecord, 'id' | 'tenantId' | 'role'>) =>
  u.id === caller.userId || isOperator(caller) || (caller.role === 'tenant-admin' && u.tenantId === caller.tenantId && u.role === 'researcher');

/** Users. Operators manage all; tenant admins their tenant's researchers and tenant admins. */
@Injectable()
export class UsersService {
  constructor(
    private readonly identity: IdentityRepository,
    private readonly tenants: TenantsRepository,
    private readonly clock: Clock,
  ) {}

  /** Creates a user with no permission check (bootstrap and demo seeding). 404 unknown tenant, 409 duplicate. */
  async create(input: CreateUser): Promise<UserView> {
    let tenantId: string | null = null;
    if (input.tenant !== null) {
      const t = await this.tenants.findByName(input.tenant);
      if (!t) throw notFound(`no tenant ${input.tenant}`);
      tenantId = t.id;
    }
    await uniqueOr409(`user ${input.name}`, () => this.identity.createUser({ name: input.name, tenantId, role: input.role }));
    return userView((await this.identity.findUser(input.name))!);
  }

  /** Creates a user on behalf of a caller: tenant admins only researchers and tenant admins, only in their tenant. */
  async createAs(caller: Principal, input: CreateUser): Promise<UserView> {
    if (!isOperator(caller)) {
      if (input.role === 'operator') throw forbidden('tenant admins create researchers and tenant admins only');
      if (input.tenant !== caller.tenantName) throw notFound(`no tenant ${input.tenant}`);
    }
    return this.create(input);
  }

  async list(caller: Principal, q: ListUsersQuery): Promise<UserView[]> {
    let tenantId: string | undefined;
    if (q.tenant) {
      const t = await this.tenants.findByName(q.tenant);
      if (!t || !(isOperator(caller) || t.id === caller.tenantId)) throw notFound(`no tenant ${q.tenant}`);
      tenantId = t.id;
    } else if (!isOperator(caller)) tenantId = caller.tenantId!;
    return (await this.identity.listUsers(tenantId)).map(userView);
  }

  /** A user the caller may see, or 404. */
  async visible(caller: Principal, name: string): Promise<UserRecord> {
    const u = await this.identity.findUser(name);
    if (!u || !seesUser(caller, u)) throw notFound(`no user ${name}`);
    return u;
  }

  /**
   * Disables a user (every token of theirs answers 401 at once, however it was made) or enables
   * them again (their unexpired, unrevoked tokens work again). Operators: anyone but themselves;
   * tenant admins: their tenant's researchers. Nobody disables themselves, so an operator always
   * remains. Idempotent: disabling a disabled user keeps when it first happened.
   */
  async setDisabled(caller: Principal, name: string, disabled: boolean): Promise<UserView> {
    const u = await this.managed(caller, name);
    if (u.id === caller.userId) throw forbidden('you cannot disable or enable yourself: ask an operator (or, for a researcher, a tenant admin)');
    await this.identity.setUserDisabled(u.id, disabled ? this.clock.now() : null);
    return userView((await this.identity.findUserById(u.id))!);
  }

  /** A user the caller manages: 404 if they may not see them, 403 if they see but do not manage them. */
  async managed(caller: Principal, name: string): Promise<UserRecord> {
    const u = await this.visible(caller, name);
    if (!managesUser(caller, u)) throw forbidden(`you do not manage user ${name}`);
    return u;
  }
}
