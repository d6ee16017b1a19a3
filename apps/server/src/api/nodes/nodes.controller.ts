import { Body, Controller, Get, HttpCode, Param, Post } from '@nestjs/common';
import { CreateNode, DrainNode, GpuParams, NameParams, NodeView } from '@nuri/contracts';
import { Caller, Principal, Roles } from '../../auth/principal';
import { Zod } from '../common/zod-pipe';
import { NodesService } from './nodes.service';

@Controller('v1/nodes')
export class NodesController {
  constructor(private readonly nodes: NodesService) {}

  @Get()
  list(@Caller() me: Principal): Promise<NodeView[]> {
    return this.nodes.list(me);
  }

  @Get(':name')
  get(@Caller() me: Principal, @Param(new Zod(NameParams, 'path')) p: NameParams): Promise<NodeView> {
    return this.nodes.get(me, p.name);
  }

  @Post()
  @Roles('operator')
  register(@Body(new Zod(CreateNode, 'body')) body: CreateNode): Promise<NodeView> {
    return this.nodes.register(body);
  }

  @Post(':name/drain')
  @Roles('operator')
  @HttpCode(200)
  drain(@Param(new Zod(NameParams, 'path')) p: NameParams, @Body(new Zod(DrainNode, 'body')) body: DrainNode): Promise<NodeView> {
    return this.nodes.drain(p.name, body);
  }

  @Post(':name/return')
  @Roles('operator')
  @HttpCode(200)
  return(@Param(new Zod(NameParams, 'path')) p: NameParams): Promise<NodeView> {
    return this.nodes.return(p.name);
  }

  @Post(':name/gpus/:index/return')
  @Roles('operator')
  @HttpCode(200)
  returnGpu(@Param(new Zod(GpuParams, 'path')) p: GpuParams): Promise<NodeView> {
    return this.nodes.returnGpu(p.name, p.index);
  }
}
