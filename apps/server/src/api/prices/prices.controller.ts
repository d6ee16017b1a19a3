import { Body, Controller, Get, Put } from '@nestjs/common';
import { PriceView, SetPrices } from '@nuri/contracts';
import { Caller, Principal, Roles } from '../../auth/principal';
import { Zod } from '../common/zod-pipe';
import { PricesService } from './prices.service';

@Controller('v1/prices')
export class PricesController {
  constructor(private readonly prices: PricesService) {}

  @Get()
  list(@Caller() me: Principal): Promise<PriceView[]> {
    return this.prices.list(me);
  }

  @Put()
  @Roles('operator')
  set(@Caller() me: Principal, @Body(new Zod(SetPrices, 'body')) body: SetPrices): Promise<PriceView[]> {
    return this.prices.set(me, body);
  }
}
