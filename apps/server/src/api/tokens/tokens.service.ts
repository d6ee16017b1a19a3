import { Injectable } from '@nestjs/common';
import { CreateToken, TokenView } from '@nuri/contracts';
import { IdentityRepository, Principal } from '@nuri/db';
import { AuthService } from '../../auth/auth.service';
import { Clock } from '../../core/clock';
import { notFound } from '../common/errors';
import { tokenView } from '../common/views';
import { managesUser, seesUser, UsersService } from '../users/users.service';

const DAY_MS = 24 * 3600 * 1000;

/** API tokens: for yourself, or for a user you manage. The secret is shown once, at creation. */
@Injectable()
export class TokensService {
  constructor(
    private readonly auth: AuthService,
    private readonly users: UsersService,
    private readonly identity: IdentityRepository,
    private readonly clock: Clock,
  ) {}

  async create(caller: Principal, input: CreateToken): Promise<TokenView> {
    const user = await this.users.managed(caller, input.user);
    const expiresAt = input.expiresInDays ? new Date(this.clock.now().getTime() + input.expiresInDays * DAY_MS) : null;
    const t = await this.auth.issueToken(user.id, input.description, expiresAt);
    return tokenView({ ...t, description: input.description }, user.name, t.token);
  }

  /** Live (unrevoked) tokens of a user, yourself by default; never their secrets. */
  async list(caller: Principal, userName?: string): Promise<TokenView[]> {
    const user = await this.users.managed(caller, userName ?? caller.userName);
    return (await this.identity.listTokens(user.id)).map((t) => tokenView(t, user.name));
  }

  /** Revokes a token of yours or of a user you manage; 404 for any other, or one already revoked. */
  async revoke(caller: Principal, id: string): Promise<void> {
    const owner = await this.identity.tokenOwner(id);
    const user = owner && (await this.identity.findUserById(owner.userId));
    if (!user || !seesUser(caller, user) || !managesUser(caller, user)) throw notFound('no such token');
    if (!(await this.identity.revokeToken(id, null, this.clock.now()))) throw notFound('no such token');
  }
}
