import 'reflect-metadata';
import { Logger, type LogLevel, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import type { RawServerDefault } from 'fastify';
import type { ServerConfig } from '@nuri/config';
import { DatabaseHandle, IdentityRepository, migrateToLatest, NodesRepository, openDatabase, TenantsRepository } from '@nuri/db';
import type { AddressInfo } from 'node:net';
import { AppModule } from './app.module';
import { BODY_LIMIT_BYTES } from './api/common/limits';
import { NodesService } from './api/nodes/nodes.service';
import { PricesService } from './api/prices/prices.service';
import { TenantsService } from './api/tenants/tenants.service';
import { UsersService } from './api/users/users.service';
import { AuthService } from './auth/auth.service';
import { Clock, SystemClock } from './core/clock';
import { Wakeups } from '@nuri/db';
import { DemoHandle, startDemo } from './demo/demo';
import { FleetService } from './gateway/fleet.service';
import { LogRelay } from './gateway/log-relay';
import { AgentGateway } from './gateway/transport';
import { NuriLogger } from './logging';

export interface RunningServer {
  app: NestFastifyApplication;
  database: DatabaseHandle;
  /** Base URL of the HTTP listener, e.g. http://127.0.0.1:8080 */
  url: string;
  port: number;
  gateway?: AgentGateway;
  demo?: DemoHandle;
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

const SHUTDOWN_STEP_MS = 15_000;

async function step(what: string, fn: () => Promise<unknown> | undefined): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), SHUTDOWN_STEP_MS)));
  try {
    const outcome = await Promise.race([Promise.resolve(fn()).then(() => 'done' as const), timeout]);
    if (outcome === 'timeout') new Logger('Shutdown').error(`gave up waiting for the ${what} after ${SHUTDOWN_STEP_MS / 1000}s`);
  } finally {
    clearTimeout(timer);
  }
}

/** Opens the database, migrates it, and starts the configured roles in this process. */
export async function startServer(config: ServerConfig, options: StartOptions = {}): Promise<RunningServer> {
  const database = options.database ?? (await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir }));
  await migrateToLatest(database.db);
  const wakeups = new Wakeups(new Logger('Wakeups'));
  if (database.kind === 'postgres' && config.databaseUrl)
    await wakeups.connect(config.databaseUrl, config.roles.has('scheduler') || config.roles.has('gateway'));
  const clock = options.clock ?? new SystemClock();
  // The scheduler next to other roles on PostgreSQL gets a pool of its own (see SCHEDULER_DATABASE).
  const schedulerDatabase =
    database.kind === 'postgres' && config.databaseUrl && config.roles.has('scheduler') && config.roles.size > 1
      ? await openDatabase({ url: config.databaseUrl, poolSize: 4 })
      : undefined;
  const app = await NestFactory.create<NestFastifyApplication>(
    AppModule.forRoles(config, database, clock, wakeups, options.modules, schedulerDatabase),
    // Fastify, not Express: under 16 clients submitting, Express with its router and body
    // parser was about 110 µs of CPU per request of the api's ~350 (a Nest app with the same
    // guard, pipe and answer: 138 µs a request on Express, 28 on Fastify).
    new FastifyAdapter({ bodyLimit: BODY_LIMIT_BYTES, routerOptions: { ignoreTrailingSlash: true } }),
    { logger: new NuriLogger(config.logFormat, LEVELS[config.logLevel]) },
  );
  app.enableShutdownHooks();
  // JSON as Fastify parses it (prototype poisoning refused), except that an empty body is no
  // body: clients that always send `Content-Type: application/json` (a bodiless cancel) were
  // answered by Express, and Fastify alone would refuse them with 400.
  const json = app.getHttpAdapter().getInstance().getDefaultJsonParser('error', 'error');
  app.useBodyParser<RawServerDefault>('application/json', { bodyLimit: BODY_LIMIT_BYTES }, (req, body, done) =>
    // (It parses a Buffer as well as a string: secure-json-parse takes both.)
    body.length === 0 ? done(null, undefined) : json(req, body as unknown as string, done),
  );
  const auth = config.roles.has('api') ? app.get(AuthService) : undefined;
  if (config.bootstrapToken && auth) await auth.ensureBootstrapOperator(config.bootstrapToken);
  await app.listen(config.port, config.host);
  const port = (app.getHttpServer().address() as AddressInfo).port;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const url = `http://${host}:${port}`;

  let gateway: AgentGateway | undefined;
  if (config.roles.has('gateway')) {
    const fleet = app.get(FleetService);
    const relay = app.get(LogRelay);
    const gwLog = new Logger('AgentGateway');
    gateway = new AgentGateway({
      fleet,
      logs: relay,
      server: app.getHttpServer(),
      path: '/agent',
      heartbeatSeconds: config.agentHeartbeatSeconds,
      // The transport's own problems (refused upgrades, abuse, ping timeouts, fleet errors) go to the server log.
      log: (level, msg) => (level === 'error' ? gwLog.error(msg) : level === 'warn' ? gwLog.warn(msg) : level === 'info' ? gwLog.log(msg) : gwLog.debug(msg)),
    });
    await gateway.start();
    fleet.attach(gateway);
    relay.attach(gateway);
    // Api replicas find this process through gateway_instances to read its agents' job output.
    await relay.announce(fleet.instanceId, config.gatewayInternalUrl ?? url);
  }
  let demo: DemoHandle | undefined;
  if (config.demo && auth) {
    demo = await startDemo(
      config,
      {
        tenants: app.get(TenantsRepository),
        identity: app.get(IdentityRepository),
        nodes: app.get(NodesRepository),
        auth,
        tenantsService: app.get(TenantsService),
        usersService: app.get(UsersService),
        nodesService: app.get(NodesService),
        pricesService: app.get(PricesService),
      },
      `ws://${host}:${port}/agent`,
      config.bootstrapToken,
    );
  }
  return {
    app,
    database,
    url,
    port,
    gateway,
    demo,
    async close() {
      // Each step is bounded: a shutdown that hangs on one part (a stuck connection, a job
      // that will not die) must still finish, and say which part it gave up on.
      await step('demo agents', () => demo?.stop());
      await step('agent gateway', () => gateway?.stop());
      await step('application', () => app.close());
      await step('wake-ups', () => wakeups.close());
      if (schedulerDatabase) await step('scheduler database', () => schedulerDatabase.close());
      if (!options.database) await step('database', () => database.close());
    },
  };
}
