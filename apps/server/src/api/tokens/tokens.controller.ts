import { Body, Controller, Delete, Get, HttpCode, Param, Post, Query } from '@nestjs/common';
import { CreateToken, IdParams, ListTokensQuery, RevokeTokenQuery, TokenView } from '@nuri/contracts';
import { Caller, Principal } from '../../auth/principal';
import { Zod } from '../common/zod-pipe';
import { TokensService } from './tokens.service';

@Controller('v1/tokens')
export class TokensController {
  constructor(private readonly tokens: TokensService) {}

  @Post()
  create(@Caller() me: Principal, @Body(new Zod(CreateToken, 'body')) body: CreateToken): Promise<TokenView> {
    return this.tokens.create(me, body);
  }

  @Get()
  list(@Caller() me: Principal, @Query(new Zod(ListTokensQuery, 'query')) q: ListTokensQuery): Promise<TokenView[]> {
    return this.tokens.list(me, q.user);
  }

  @Delete(':id')
  @HttpCode(204)
  revoke(@Caller() me: Principal, @Param(new Zod(IdParams, 'path')) p: IdParams, @Query(new Zod(RevokeTokenQuery, 'query')) q: RevokeTokenQuery): Promise<void> {
    return this.tokens.revoke(me, p.id, q.cascade);
  }
}
