import { parseServerConfig } from '@nuri/config';
import { DatabaseHandle, IdentityRepository, JobsRepository, migrateToLatest, NodesRepository, openDatabase } from '@nuri/db';
import { createTestDatabase } from '../../libs/db/src/testing';
import { startServer, RunningServer } from '../../apps/server/src/bootstrap';
import { AuthService, NodesService, TenantsService, UsersService } from '../../apps/server/src/api';
import type { Clock } from '../../apps/server/src/core/clock';

export type DbKind = 'postgres' | 'pglite';

export interface Reply<T = any> {
  status: number;
  body: T;
}

/** A real Nest app on a fresh database, with a small center seeded through the services the lead reuses. */
export class Harness {
  server!: RunningServer;
  private dropDb!: () => Promise<void>;
  tokens: Record<string, string> = {};

  /** `env`: more configuration, as environment variables; `clock`: the server's time (tests move it). */
  constructor(
    readonly kind: DbKind = 'postgres',
    private readonly opts: { env?: Record<string, string>; clock?: Clock } = {},
  ) {}

  get db(): DatabaseHandle {
    return this.server.database;
  }
  get jobs() {
    return new JobsRepository(this.db.db);
  }
  get nodes() {
    return new NodesRepository(this.db.db);
  }
  get identity() {
    return new IdentityRepository(this.db.db);
  }
  service<T>(cls: new (...a: any[]) => T): T {
    return this.server.app.get(cls as any);
  }

  async start(): Promise<this> {
    let database: DatabaseHandle;
    if (this.kind === 'postgres') {
      const t = await createTestDatabase();
      database = t.handle;
      this.dropDb = t.drop;
    } else {
      database = await openDatabase({});
      await migrateToLatest(database.db);
      this.dropDb = () => database.close();
    }
    this.server = await startServer(
      parseServerConfig({ PORT: '0', NURI_ROLES: 'api', NURI_DEMO: '0', HOST: '127.0.0.1', NURI_LOG_LEVEL: 'error', ...this.opts.env }),
      { database, clock: this.opts.clock },
    );
    return this;
  }

  async stop(): Promise<void> {
    await this.server?.close();
    await this.dropDb?.();
  }

  /** Two tenants (naver, kakao), a researcher pair and an admin each, an operator, and H100/H800 nodes. */
  async seed(): Promise<void> {
    const auth = this.service(AuthService);
    const tenants = this.service(TenantsService);
    const users = this.service(UsersService);
    await auth.ensureBootstrapOperator('bootstrap-token-for-tests-0123456789');
    this.tokens.op = 'bootstrap-token-for-tests-0123456789';
    await tenants.create({ name: 'naver', displayName: 'Naver', weight: 1, quotas: [{ gpuType: 'h100', guaranteed: 16, limit: 32 }, { gpuType: 'h800', guaranteed: 0, limit: 8 }] });
    await tenants.create({ name: 'kakao', displayName: 'Kakao', weight: 1, quotas: [{ gpuType: 'h100', guaranteed: 8, limit: 16 }] });
    for (const [name, tenant, role] of [
      ['alice', 'naver', 'researcher'],
      ['ann', 'naver', 'researcher'],
      ['nadmin', 'naver', 'tenant-admin'],
      ['bob', 'kakao', 'researcher'],
      ['kadmin', 'kakao', 'tenant-admin'],
    ] as const) {
      await users.create({ name, tenant, role });
      const u = (await this.identity.findUser(name))!;
      this.tokens[name] = (await auth.issueToken(u.id, 'test', null)).token;
    }
    const nodes = this.service(NodesService);
    for (let i = 0; i < 4; i++) await nodes.register({ name: `h100-${i}`, gpuType: 'h100', gpus: 8, rack: 'r1', leafSwitch: `l${i % 2}` });
  }

  async call<T = any>(who: string | null, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply<T>> {
    const h: Record<string, string> = { ...headers };
    if (who !== null) h.authorization = `Bearer ${this.tokens[who] ?? who}`;
    if (body !== undefined) h['content-type'] = 'application/json';
    const res = await fetch(this.server.url + path, { method, headers: h, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) });
    const text = await res.text();
    let parsed: any = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // leave as text
    }
    return { status: res.status, body: parsed };
  }

  async jobCount(): Promise<number> {
    const r = await this.db.db.selectFrom('jobs').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    return Number(r.n);
  }

  /** Moves a pending job to running on a node (what the scheduler will do). */
  async start_(jobId: string, node: string, gpuIndices: number[], at = new Date()): Promise<void> {
    const nodeId = (await this.nodes.idByName(node))!;
    await this.nodes.setState(nodeId, 'up', 'test');
    const r = await this.jobs.commitStarts([{ jobId, gpuModel: 'h100', placement: [{ nodeId, gpuIndices }] }], at);
    if (r.started.length !== 1) throw new Error(`could not start: ${JSON.stringify(r.skipped)}`);
  }
}

export const job = (over: Record<string, unknown> = {}) => ({ name: 'train', gpus: 2, gpuType: 'h100', timeLimitSeconds: 3600, command: ['python', 'train.py'], ...over });
