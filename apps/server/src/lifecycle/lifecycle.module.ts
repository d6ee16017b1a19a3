import { Module } from '@nestjs/common';
import { JobLifecycle } from './job-lifecycle';

@Module({ providers: [JobLifecycle], exports: [JobLifecycle] })
export class LifecycleModule {}
