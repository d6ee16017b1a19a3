import { Inject, Injectable } from '@nestjs/common';
import type { ServerConfig } from '@nuri/config';
import { CreateToken, TokenView } from '@nuri/contracts';
import { IdentityRepository, Principal } from '@nuri/db';
import { AuthService } from '../../auth/auth.service';
import { Clock } from '../../core/clock';
import { CONFIG } from '../../core/core.module';
import { conflict, invalidField, notFound } from '../common/errors';
import { tokenView } from '../common/views';
import { managesUser, seesUser, UsersService } from '../users/users.service';

const DAY_S = 24 * 3600;

/**
 * API tokens: for yourself, or for a user you manage. The secret is shown once, at creation.
 *
 * Lifetimes: a new token never outlives the token that asks for it (so revoking a token, or
 * letting it expire, bounds everything made with it), nor NURI_TOKEN_MAX_LIFETIME_SECONDS
 * when that is set. A lifetime asked beyond either is refused (400 naming the field); none
 * asked gets the longest both allow, which is "never expires" only when neither bounds it.
 */
@Injectable()
export class TokensService {
  constructor(
    private readonly auth: AuthService,
    private readonly users: UsersService,
    private readonly identity: IdentityRepository,
    private readonly clock: Clock,
    @Inject(CONFIG) private readonly config: ServerConfig,
  ) {}

  async create(caller: Principal, input: CreateToken): Promise<TokenView> {
    const user = await this.users.managed(caller, input.user);
    if (user.disabledAt) throw conflict(`user ${user.name} is disabled: enable them before making tokens for them`);
    const expiresAt = this.expiry(caller, input);
    const t = await this.auth.issueToken(user.id, input.description, expiresAt, caller.tokenId);
    return tokenView({ ...t, description: input.description }, user.name, t.token);
  }

  /** When a token asked for by `caller` expires, or a 400 naming the field whose lifetime is too long. */
  private expiry(caller: Principal, input: CreateToken): Date | null {
    const now = this.clock.now().getTime();
    const max = this.config.tokenMaxLifetimeSeconds;
    const callerEnds = caller.tokenExpiresAt?.getTime();
    const field = input.expiresInSeconds !== undefined ? 'expiresInSeconds' : 'expiresInDays';
    const asked = input.expiresInSeconds ?? (input.expiresInDays !== undefined ? input.expiresInDays * DAY_S : undefined);
    if (asked === undefined) {
      const ends = Math.min(max ? now + max * 1000 : Infinity, callerEnds ?? Infinity);
      return Number.isFinite(ends) ? new Date(ends) : null;
    }
    if (max && asked > max)
      throw invalidField(field, `must not exceed the maximum token lifetime, ${max} seconds (NURI_TOKEN_MAX_LIFETIME_SECONDS); leave it out for the longest allowed`);
    const ends = now + asked * 1000;
    if (callerEnds !== undefined && ends > callerEnds)
      throw invalidField(
        field,
        `must not outlive the token you call with, which expires at ${new Date(callerEnds).toISOString()}; leave it out for a token that expires with it`,
      );
    return new Date(ends);
  }

  /** Live (unrevoked) tokens of a user, yourself by default; never their secrets. */
  async list(caller: Principal, userName?: string): Promise<TokenView[]> {
    const user = await this.users.managed(caller, userName ?? caller.userName);
    return (await this.identity.listTokens(user.id)).map((t) => tokenView(t, user.name));
  }

  /**
   * Revokes a token of yours or of a user you manage; 404 for any other, or one already revoked.
   * With `cascade`, every live token created with it goes too, and theirs in turn (a token can
   * only create tokens for users its owner manages, so this reaches no one else's); on a token
   * already revoked it still revokes what lives below it, and is 404 only when nothing does.
   */
  async revoke(caller: Principal, id: string, cascade = false): Promise<void> {
    const owner = await this.identity.tokenOwner(id);
    const user = owner && (await this.identity.findUserById(owner.userId));
    if (!user || !seesUser(caller, user) || !managesUser(caller, user)) throw notFound('no such token');
    if ((await this.identity.revokeTokenTree(id, cascade, this.clock.now())).length === 0) throw notFound('no such token');
  }
}
