import { Controller, Get } from '@nestjs/common';
import type { MeView } from '@nuri/contracts';
import { Caller, Principal } from '../../auth/principal';

@Controller('v1/me')
export class MeController {
  @Get()
  me(@Caller() me: Principal): MeView {
    return { user: me.userName, tenant: me.tenantName, role: me.role };
  }
}
