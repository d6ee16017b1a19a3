import { createParamDecorator, ExecutionContext, SetMetadata } from '@nestjs/common';
import type { Principal } from '@nuri/db';

export type { Principal };
export type RoleName = Principal['role'];

export const PUBLIC_KEY = 'nuri:public';
export const ROLES_KEY = 'nuri:roles';

/** The route needs no token (health, metrics, the OpenAPI document). */
export const Public = () => SetMetadata(PUBLIC_KEY, true);

/** Only these roles may call the route; others get 403 (the route exists for everyone). */
export const Roles = (...roles: RoleName[]) => SetMetadata(ROLES_KEY, roles);

export interface AuthedRequest {
  principal?: Principal;
}

/** The authenticated caller, set by the guard. */
export const Caller = createParamDecorator((_: unknown, ctx: ExecutionContext): Principal => {
  const p = ctx.switchToHttp().getRequest<AuthedRequest>().principal;
  if (!p) throw new Error('route has no principal: is it marked @Public()?');
  return p;
});

export const isOperator = (p: Principal) => p.role === 'operator';

/** Whether the caller may see things that belong to this tenant. */
export const seesTenant = (p: Principal, tenantId: string) => p.role === 'operator' || p.tenantId === tenantId;
