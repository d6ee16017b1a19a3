import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { forbidden, unauthorized } from '../api/common/errors';
import { AuthService } from './auth.service';
import { AuthedRequest, PUBLIC_KEY, RoleName, ROLES_KEY } from './principal';

/** Paths other modules serve that need no token (their controllers are not ours to mark). */
const PUBLIC_PATHS = new Set(['/healthz', '/metrics', '/v1/openapi.json']);

/** A request URL's path, without its query. */
const pathOf = (url: string) => {
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
};

/** Routes whose changes can refuse a token that was accepted (see AuthService's cache). */
const IDENTITY_PATHS = /^\/v1\/(users|tokens)(\/|$)/;

/**
 * Global guard: every HTTP route needs `Authorization: Bearer <token>` unless it is public.
 * Then `@Roles(...)` restricts the route to some roles (403).
 */
@Injectable()
export class AuthGuard implements CanActivate {
  constructor(
    private readonly auth: AuthService,
    private readonly reflector: Reflector,
  ) {}

  async canActivate(ctx: ExecutionContext): Promise<boolean> {
    if (ctx.getType() !== 'http') return true; // agents authenticate on the gateway's own handshake
    const targets = [ctx.getHandler(), ctx.getClass()];
    const req = ctx.switchToHttp().getRequest<FastifyRequest & AuthedRequest>();
    const path = pathOf(req.url);
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC_KEY, targets) || PUBLIC_PATHS.has(path)) return true;
    const header = req.headers.authorization;
    const m = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    if (!m) throw unauthorized('an Authorization: Bearer <token> header is required');
    if (req.method !== 'GET' && IDENTITY_PATHS.test(path)) {
      // A change to users or tokens (revoke, disable): cached checks go once it is answered, so
      // the next request through this replica sees it.
      ctx.switchToHttp().getResponse<FastifyReply>().raw.once('finish', () => this.auth.forgetAll());
    }
    const r = await this.auth.check(m[1]!);
    if ('refused' in r)
      throw unauthorized(r.refused === 'user_disabled' ? "the token's user is disabled" : 'the token is unknown, expired or revoked');
    const principal = r.principal;
    req.principal = principal;
    const roles = this.reflector.getAllAndOverride<RoleName[] | undefined>(ROLES_KEY, targets);
    if (roles && !roles.includes(principal.role)) throw forbidden(`this needs the role ${roles.join(' or ')}`);
    return true;
  }
}
