import { Body, Controller, Get, HttpCode, Param, Post, Query } from '@nestjs/common';
import { CreateUser, ListUsersQuery, NameParams, UserView } from '@nuri/contracts';
import { Caller, Principal, Roles } from '../../auth/principal';
import { Zod } from '../common/zod-pipe';
import { UsersService } from './users.service';

@Controller('v1/users')
@Roles('operator', 'tenant-admin')
export class UsersController {
  constructor(private readonly users: UsersService) {}

  @Get()
  list(@Caller() me: Principal, @Query(new Zod(ListUsersQuery, 'query')) q: ListUsersQuery): Promise<UserView[]> {
    return this.users.list(me, q);
  }

  @Post()
  create(@Caller() me: Principal, @Body(new Zod(CreateUser, 'body')) body: CreateUser): Promise<UserView> {
    return this.users.createAs(me, body);
  }

  @Post(':name/disable')
  @HttpCode(200)
  disable(@Caller() me: Principal, @Param(new Zod(NameParams, 'path')) p: NameParams): Promise<UserView> {
    return this.users.setDisabled(me, p.name, true);
  }

  @Post(':name/enable')
  @HttpCode(200)
  enable(@Caller() me: Principal, @Param(new Zod(NameParams, 'path')) p: NameParams): Promise<UserView> {
    return this.users.setDisabled(me, p.name, false);
  }
}
