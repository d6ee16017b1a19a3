import 'reflect-metadata';
import type { INestApplication, LogLevel, Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { ServerConfig } from '@nuri/config';
import { DatabaseHandle, migrateToLatest, openDatabase } from '@nuri/db';
import type { AddressInfo } from 'node:net';
import { AppModule } from './app.module';
import { Clock, SystemClock } from './core/clock';
import { Wakeups } from './core/wakeups';

export interface RunningServer {
  app: INestApplication;
  database: DatabaseHandle;
  /** Base URL of the HTTP listener, e.g. http://127.0.0.1:8080 */
  url: string;
  port: number;
  close(): Promise<void>;
}

export interface StartOptions {
  clock?: Clock;
  /** Extra Nest modules (tests). */
  modules?: Type[];
  /** Use this database instead of opening one from the config (tests). */
  database?: DatabaseHandle;
}

const LEVELS: Record<ServerConfig['logLevel'], LogLevel[]> = {
  error: ['error', 'fatal'],
  warn: ['error', 'fatal', 'warn'],
  log: ['error', 'fatal', 'warn', 'log'],
  debug: ['error', 'fatal', 'warn', 'log', 'debug'],
};

/** Opens the database, migrates it, and starts the configured roles in this process. */
export async function startServer(config: ServerConfig, options: StartOptions = {}): Promise<RunningServer> {
  const database = options.database ?? (await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir }));
  await migrateToLatest(database.db);
  const wakeups = new Wakeups();
  if (database.kind === 'postgres' && config.databaseUrl) await wakeups.connect(config.databaseUrl, config.roles.has('scheduler') || config.roles.has('gateway'));
  const clock = options.clock ?? new SystemClock();
  const app = await NestFactory.create(AppModule.forRoles(config, database, clock, wakeups, options.modules), {
    logger: LEVELS[config.logLevel],
    bodyParser: true,
  });
  app.enableShutdownHooks();
  await app.listen(config.port, config.host);
  const port = (app.getHttpServer().address() as AddressInfo).port;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  return {
    app,
    database,
    url: `http://${host}:${port}`,
    port,
    async close() {
      await app.close();
      await wakeups.close();
      if (!options.database) await database.close();
    },
  };
}
