import { Body, Controller, Get, Param, Patch, Post, Put } from '@nestjs/common';
import { CreateTenant, NameParams, SetQuotas, TenantView, UpdateTenant } from '@nuri/contracts';
import { Caller, Principal, Roles } from '../../auth/principal';
import { Zod } from '../common/zod-pipe';
import { TenantsService } from './tenants.service';

@Controller('v1/tenants')
export class TenantsController {
  constructor(private readonly tenants: TenantsService) {}

  @Get()
  list(@Caller() me: Principal): Promise<TenantView[]> {
    return this.tenants.list(me);
  }

  @Get(':name')
  get(@Caller() me: Principal, @Param(new Zod(NameParams, 'path')) p: NameParams): Promise<TenantView> {
    return this.tenants.get(me, p.name);
  }

  @Post()
  @Roles('operator')
  create(@Body(new Zod(CreateTenant, 'body')) body: CreateTenant): Promise<TenantView> {
    return this.tenants.create(body);
  }

  @Patch(':name')
  @Roles('operator')
  update(@Param(new Zod(NameParams, 'path')) p: NameParams, @Body(new Zod(UpdateTenant, 'body')) body: UpdateTenant): Promise<TenantView> {
    return this.tenants.update(p.name, body);
  }

  @Put(':name/quotas')
  @Roles('operator')
  setQuotas(@Param(new Zod(NameParams, 'path')) p: NameParams, @Body(new Zod(SetQuotas, 'body')) body: SetQuotas): Promise<TenantView> {
    return this.tenants.setQuotas(p.name, body);
  }
}
