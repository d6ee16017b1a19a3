import { Injectable } from '@nestjs/common';
import { GPUS_PER_NODE, isTerminal, JobView, ListJobsQuery, SubmitJob } from '@nuri/contracts';
import { IdentityRepository, isUuid, JobRecord, JobsRepository, NodesRepository, Principal, TenantsRepository } from '@nuri/db';
import { NuriMetrics } from '@nuri/metrics';
import { Clock } from '../../core/clock';
import { Wakeups } from '../../core/wakeups';
import { isOperator, seesTenant } from '../../auth/principal';
import { conflict, forbidden, invalidField, notFound } from '../common/errors';
import { jobView } from '../common/views';

export interface JobPage {
  items: JobView[];
  nextCursor: string | null;
}

/** Keyset cursor: base64url of JSON [submittedAt ISO, id] of the last item of a page. */
export const encodeCursor = (j: { submitted_at: Date; id: string }) => Buffer.from(JSON.stringify([j.submitted_at.toISOString(), j.id])).toString('base64url');

export function decodeCursor(cursor: string): { submittedAt: Date; id: string } {
  try {
    const v: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && typeof v[1] === 'string' && isUuid(v[1])) {
      const submittedAt = new Date(v[0]);
      if (!Number.isNaN(submittedAt.getTime())) return { submittedAt, id: v[1] };
    }
  } catch {
    // falls through to the 400
  }
  throw invalidField('cursor', 'not a cursor this API returned');
}

/**
 * Jobs as users see them. Researchers and tenant admins act within their tenant: they read
 * all of its jobs; a researcher cancels only their own, a tenant admin any of the tenant's.
 * Operators see and cancel everything but submit nothing (they belong to no tenant).
 * A job of another tenant does not exist for the caller (404).
 */
@Injectable()
export class JobsService {
  constructor(
    private readonly jobs: JobsRepository,
    private readonly nodes: NodesRepository,
    private readonly tenants: TenantsRepository,
    private readonly identity: IdentityRepository,
    private readonly clock: Clock,
    private readonly wakeups: Wakeups,
    private readonly metrics: NuriMetrics,
  ) {}

  async submit(caller: Principal, input: SubmitJob): Promise<JobView> {
    if (!caller.tenantId || !caller.tenantName)
      throw forbidden('operators belong to no tenant and cannot submit jobs; submit with a token of a tenant user');
    await this.admit(caller.tenantName, input);
    const id = await this.jobs.insert({
      tenant_id: caller.tenantId,
      user_id: caller.userId,
      name: input.name,
      gpus: input.gpus,
      gpu_type: input.gpuType,
      priority: input.priority,
      time_limit_seconds: input.timeLimitSeconds,
      command: input.command,
      env: input.env,
      working_dir: input.workingDir ?? null,
      requeue: input.requeue,
      submitted_at: this.clock.now(),
    });
    this.wakeups.wake('submit');
    this.metrics.recordJobTransition(caller.tenantName, input.gpuType, null, 'pending');
    return this.view(id);
  }

  /**
   * Refuses at submission what could never run: a GPU type no node has, or more GPUs than
   * the tenant's limit for the type (for `any`: than the largest limit among types that exist).
   */
  private async admit(tenantName: string, input: SubmitJob): Promise<void> {
    const [counts, tenant] = await Promise.all([this.nodes.countByType(), this.tenants.findByName(tenantName)]);
    const types = input.gpuType === 'any' ? (['h100', 'h800'] as const).filter((t) => counts[t] > 0) : counts[input.gpuType] > 0 ? [input.gpuType] : [];
    if (!types.length) throw invalidField('gpuType', 'no node of that type exists');
    const limitOf = (t: 'h100' | 'h800') => tenant?.quotas.find((q) => q.gpuType === t)?.limit ?? 0;
    const limit = Math.max(...types.map(limitOf));
    if (input.gpus > limit)
      throw invalidField('gpus', `exceeds the tenant's limit of ${limit} ${input.gpuType === 'any' ? 'GPUs of any type' : `${input.gpuType} GPUs`}: it could never run`);
    if (input.gpus > GPUS_PER_NODE) {
      const nodes = Math.max(...types.map((t) => counts[t]));
      if (input.gpus / GPUS_PER_NODE > nodes) throw invalidField('gpus', `needs ${input.gpus / GPUS_PER_NODE} whole nodes; only ${nodes} exist`);
    }
  }

  async get(caller: Principal, id: string): Promise<JobView> {
    const job = await this.visible(caller, id);
    return this.view(job.id);
  }

  async list(caller: Principal, q: ListJobsQuery): Promise<JobPage> {
    let tenantId: string | undefined;
    if (isOperator(caller)) {
      if (q.tenant) {
        const t = await this.tenants.findByName(q.tenant);
        if (!t) throw notFound(`no tenant ${q.tenant}`);
        tenantId = t.id;
      }
    } else {
      if (q.tenant && q.tenant !== caller.tenantName) throw notFound(`no tenant ${q.tenant}`);
      tenantId = caller.tenantId!;
    }
    let userId: string | undefined;
    if (q.user) {
      const u = await this.identity.findUser(q.user);
      if (!u || (!isOperator(caller) && u.tenantId !== caller.tenantId)) throw notFound(`no user ${q.user}`);
      userId = u.id;
    }
    const after = q.cursor ? decodeCursor(q.cursor) : undefined;
    const rows = await this.jobs.list({ tenantId, userId, states: q.state, limit: q.limit + 1, after });
    const page = rows.slice(0, q.limit);
    const details = await this.jobs.detailsOf(page);
    return { items: details.map(jobView), nextCursor: rows.length > q.limit ? encodeCursor(page[page.length - 1]!) : null };
  }

  /**
   * A pending job is cancelled at once (200). A running one is asked to stop (202): the
   * scheduler tells its agent, and the job becomes `cancelled` when the agent reports the exit.
   * A finished job cannot be cancelled (409).
   */
  async cancel(caller: Principal, id: string): Promise<{ status: 200 | 202; job: JobView }> {
    const job = await this.visible(caller, id);
    if (caller.role === 'researcher' && job.user_id !== caller.userId) throw forbidden('researchers cancel only their own jobs');
    const now = this.clock.now();
    const reason = `cancelled by ${caller.userName}`;
    for (let attempt = 0; attempt < 3; attempt++) {
      const cur = (await this.jobs.find(id))!;
      if (isTerminal(cur.state)) throw conflict(`job is already ${cur.state}`);
      if (cur.state === 'pending') {
        if (await this.jobs.transition(id, ['pending'], 'cancelled', reason, now)) {
          this.wakeups.wake('cancel');
          this.metrics.recordJobTransition(cur.tenantName, cur.gpu_type, 'pending', 'cancelled');
          return { status: 200, job: await this.view(id) };
        }
        continue; // it started (or ended) meanwhile: look again
      }
      // running
      if (cur.stop_requested === 'cancel' || (await this.jobs.requestStop(id, 'cancel', now)) || (await this.jobs.turnStopIntoCancel(id))) {
        this.wakeups.wake('cancel');
        return { status: 202, job: await this.view(id) };
      }
    }
    throw conflict('the job changed state while it was being cancelled; try again');
  }

  private async visible(caller: Principal, id: string): Promise<JobRecord> {
    const job = await this.jobs.find(id);
    if (!job || !seesTenant(caller, job.tenant_id)) throw notFound('no such job');
    return job;
  }

  private async view(id: string): Promise<JobView> {
    const d = await this.jobs.detail(id);
    if (!d) throw notFound('no such job');
    return jobView(d);
  }
}
