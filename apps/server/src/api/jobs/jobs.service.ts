import { Injectable } from '@nestjs/common';
import { CancelJobs, CancelJobsResult, DependencyKind, DependencySpec, GPU_MODELS, GPUS_PER_NODE, isTerminal, JobView, ListJobsQuery, SubmitJob } from '@nuri/contracts';
import { CancelCandidate, DependenciesRepository, IdentityRepository, isUuid, JobDetail, JobRecord, JobsRepository, NewJobInput, NodesRepository, Principal, TenantsRepository, TenantWithQuotas } from '@nuri/db';
import { NuriMetrics } from '@nuri/metrics';
import { Clock } from '../../core/clock';
import { Wakeups } from '@nuri/db';
import { isOperator, seesTenant } from '../../auth/principal';
import { conflict, forbidden, invalidField, notFound } from '../common/errors';
import { jobView } from '../common/views';

export interface JobPage {
  items: JobView[];
  nextCursor: string | null;
}

/**
 * Keyset cursor: base64url of JSON [submittedAt ISO, id] of the last item of a page; for a
 * listing of one array's tasks (ordered by index), JSON [task index].
 */
export const encodeCursor = (j: { submitted_at: Date; id: string; array_task_id?: number | null }, byTask = false) =>
  Buffer.from(JSON.stringify(byTask ? [j.array_task_id] : [j.submitted_at.toISOString(), j.id])).toString('base64url');

export function decodeCursor(cursor: string, byTask = false): { submittedAt: Date; id: string } | { taskId: number } {
  try {
    const v: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (byTask && Array.isArray(v) && v.length === 1 && Number.isSafeInteger(v[0])) return { taskId: v[0] as number };
    if (!byTask && Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && typeof v[1] === 'string' && isUuid(v[1])) {
      const submittedAt = new Date(v[0]);
      if (!Number.isNaN(submittedAt.getTime())) return { submittedAt, id: v[1] };
    }
  } catch {
    // falls through to the 400
  }
  throw invalidField('cursor', 'not a cursor this API returned');
}

/** The most submissions one grouped insert takes. */
const GROUP_MAX = 256;

/** How long admission reuses node counts and a tenant's quotas (see `admit`). */
const ADMIT_CACHE_MS = 1000;

/** The most candidates an ambiguous prefix lists. */
const AMBIGUOUS_SHOWN = 10;

/**
 * What a job reference matched (`byIdPrefixes` returns up to AMBIGUOUS_SHOWN + 1 per ref):
 * its one job, 'none', or, when ambiguous, the text listing the candidates.
 */
function pickRef(matches: JobRecord[] = []): JobRecord | 'none' | string {
  if (!matches.length) return 'none';
  if (matches.length === 1) return matches[0]!;
  const shown = matches.slice(0, AMBIGUOUS_SHOWN).map((j) => j.id).join(', ');
  return `matches ${shown}${matches.length > AMBIGUOUS_SHOWN ? ', …' : ''}; give more characters`;
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
    private readonly dependencies: DependenciesRepository,
  ) {}

  async submit(caller: Principal, input: SubmitJob): Promise<JobView> {
    if (!caller.tenantId || !caller.tenantName)
      throw forbidden('operators belong to no tenant and cannot submit jobs; submit with a token of a tenant user');
    await this.admit(caller.tenantName, input);
    const dependencies = input.dependency ? await this.dependenciesOf(caller.tenantId, input.dependency) : [];
    const job = {
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
      script: input.script ?? null,
    };
    // A plain job is answered from what was inserted (one round trip); an array or a job with
    // dependencies is read back.
    const plain = !input.array && !dependencies.length;
    const fresh = plain ? await this.insertGrouped(job, { tenantName: caller.tenantName, userName: caller.userName }) : undefined;
    const id = fresh ? fresh.id : await this.jobs.insert(job, { array: input.array, dependencies });
    this.wakeups.wake('submit');
    for (let i = input.array?.indices.length ?? 1; i > 0; i--) this.metrics.recordJobTransition(caller.tenantName, input.gpuType, null, 'pending');
    return fresh ? jobView(fresh) : this.view(id);
  }

  /** Plain submissions waiting for the insert in flight to end (see `insertGrouped`). */
  private readonly waiting: { job: NewJobInput; names: { tenantName: string; userName: string }; done: (r: JobDetail | Error) => void }[] = [];
  private inserting = false;

  /**
   * Group commit: while one insert is in flight, plain submissions that arrive wait and then go
   * in together, one statement and one commit for up to GROUP_MAX of them; each is answered once
   * its group committed. Alone, a submission goes at once. A group that fails is retried one by
   * one, so a bad job fails alone.
   */
  private insertGrouped(job: NewJobInput, names: { tenantName: string; userName: string }): Promise<JobDetail> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ job, names, done: (r) => (r instanceof Error ? reject(r) : resolve(r)) });
      if (!this.inserting) void this.insertWaiting();
    });
  }

  private async insertWaiting(): Promise<void> {
    this.inserting = true;
    while (this.waiting.length) {
      const group = this.waiting.splice(0, GROUP_MAX);
      try {
        const rows = await this.jobs.insertPlainMany(group);
        group.forEach((g, i) => g.done(rows[i]!));
      } catch (e) {
        if (group.length === 1) group[0]!.done(e as Error);
        else
          await Promise.all(
            group.map((g) => this.jobs.insertPlain(g.job, g.names).then(g.done, (err: Error) => g.done(err))),
          );
      }
    }
    this.inserting = false;
  }

  /**
   * The jobs a dependency names, among the tenant's (another tenant's job is no such job): each
   * ref a full id or a unique prefix; an array's id stands for every task of it. 400 naming
   * `dependency` and the ref otherwise. Two queries whatever the number of refs.
   */
  private async dependenciesOf(tenantId: string, spec: DependencySpec): Promise<{ dependsOn: string; kind: DependencyKind }[]> {
    const refs = [...new Set(spec.flatMap((d) => d.jobs.map((r) => r.toLowerCase())))];
    const found = await this.jobs.byIdPrefixes(refs, { tenantId }, AMBIGUOUS_SHOWN + 1);
    const named = new Map<string, JobRecord>();
    for (const ref of refs) {
      const m = pickRef(found.get(ref));
      if (m === 'none') throw invalidField('dependency', `${ref}: no such job`);
      if (typeof m === 'string') throw invalidField('dependency', `${ref}: ambiguous, ${m}`);
      named.set(ref, m);
    }
    const tasks = await this.dependencies.tasksOf([...named.values()].filter((j) => j.array_id === j.id).map((j) => j.id));
    const out = new Map<string, { dependsOn: string; kind: DependencyKind }>();
    for (const d of spec)
      for (const ref of d.jobs) {
        const job = named.get(ref.toLowerCase())!;
        for (const dependsOn of tasks.get(job.id) ?? [job.id]) out.set(`${d.kind}/${dependsOn}`, { dependsOn, kind: d.kind });
      }
    return [...out.values()];
  }

  /**
   * Refuses at submission what could never run: a GPU type no node has, or more GPUs than
   * the tenant's limit for the type (for `any`: than the largest limit among types that exist).
   * Node counts and the tenant's quotas are reused for ADMIT_CACHE_MS (two queries saved per
   * submit); a refusal is always decided on fresh figures, so a stale cache can only let through,
   * for that long, a job that a just-lowered limit or a just-removed node makes unrunnable (it
   * then waits with the scheduler's reason, as it would had it come a moment earlier).
   */
  private async admit(tenantName: string, input: SubmitJob): Promise<void> {
    if (!this.refusal(await this.admission(tenantName, false), input)) return;
    const refused = this.refusal(await this.admission(tenantName, true), input);
    if (refused) throw refused;
  }

  private countsCache?: { at: number; value: Promise<Record<'h100' | 'h800', number>> };
  private readonly tenantCache = new Map<string, { at: number; value: Promise<TenantWithQuotas | undefined> }>();

  private async admission(tenantName: string, fresh: boolean): Promise<{ counts: Record<'h100' | 'h800', number>; tenant: TenantWithQuotas | undefined }> {
    const now = performance.now();
    if (fresh || !this.countsCache || now - this.countsCache.at > ADMIT_CACHE_MS) {
      const value = this.nodes.countByType();
      this.countsCache = { at: now, value };
      value.catch(() => this.countsCache?.value === value && (this.countsCache = undefined));
    }
    let t = this.tenantCache.get(tenantName);
    if (fresh || !t || now - t.at > ADMIT_CACHE_MS) {
      const value = this.tenants.findByName(tenantName);
      t = { at: now, value };
      this.tenantCache.set(tenantName, t);
      value.catch(() => this.tenantCache.get(tenantName)?.value === value && this.tenantCache.delete(tenantName));
    }
    const [counts, tenant] = await Promise.all([this.countsCache.value, t.value]);
    return { counts, tenant };
  }

  private refusal({ counts, tenant }: { counts: Record<'h100' | 'h800', number>; tenant: TenantWithQuotas | undefined }, input: SubmitJob): Error | undefined {
    const types = input.gpuType === 'any' ? GPU_MODELS.filter((t) => counts[t] > 0) : counts[input.gpuType] > 0 ? [input.gpuType] : [];
    if (!types.length) return invalidField('gpuType', 'no node of that type exists');
    const limitOf = (t: 'h100' | 'h800') => tenant?.quotas.find((q) => q.gpuType === t)?.limit ?? 0;
    const limit = Math.max(...types.map(limitOf));
    if (input.gpus > limit)
      return invalidField('gpus', `exceeds the tenant's limit of ${limit} ${input.gpuType === 'any' ? 'GPUs of any type' : `${input.gpuType} GPUs`}: it could never run`);
    if (input.gpus > GPUS_PER_NODE) {
      const nodes = Math.max(...types.map((t) => counts[t]));
      if (input.gpus / GPUS_PER_NODE > nodes) return invalidField('gpus', `needs ${input.gpus / GPUS_PER_NODE} whole nodes; only ${nodes} exist`);
    }
    return undefined;
  }

  async get(caller: Principal, ref: string): Promise<JobView> {
    const job = await this.resolve(caller, ref);
    return this.view(job.id);
  }

  /**
   * The job a reference names among those the caller sees (their tenant's; operators: all): a
   * full id, or a unique prefix (case-insensitive). 404 when none, 409 listing the candidates
   * when several; jobs of other tenants never count, so a prefix reveals nothing of them.
   */
  async resolve(caller: Principal, ref: string): Promise<JobRecord> {
    if (isUuid(ref)) return this.visible(caller, ref.toLowerCase());
    return (await this.resolveMany(caller, [ref], false))[0]!;
  }

  /** Each reference's job, in one query; `named`: errors name the reference (bulk requests). */
  private async resolveMany(caller: Principal, refs: string[], named = true): Promise<JobRecord[]> {
    const found = await this.jobs.byIdPrefixes(
      refs.map((r) => r.toLowerCase()),
      isOperator(caller) ? {} : { tenantId: caller.tenantId! },
    );
    return refs.map((ref) => {
      const m = pickRef(found.get(ref.toLowerCase()));
      if (m === 'none') throw notFound(named ? `no such job ${ref}` : 'no such job');
      if (typeof m === 'string') throw conflict(`ambiguous job id prefix ${ref}: ${m}`);
      return m;
    });
  }

  /** The array a reference names: it must be an array's id (its first task's). 400 naming `field` otherwise. */
  private async arrayOf(caller: Principal, ref: string, field: string): Promise<string> {
    const job = await this.resolve(caller, ref);
    if (job.array_id === job.id) return job.id;
    throw invalidField(
      field,
      job.array_id ? `job ${job.id} is task ${job.array_task_id} of array ${job.array_id}: give the array's id` : `job ${job.id} is not a job array`,
    );
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
    const userId = q.user ? await this.userId(caller, q.user) : undefined;
    const arrayId = q.array ? await this.arrayOf(caller, q.array, 'array') : undefined;
    const byTask = arrayId !== undefined;
    const after = q.cursor ? decodeCursor(q.cursor, byTask) : undefined;
    const rows = await this.jobs.list({ tenantId, userId, states: q.state, name: q.name, arrayId, limit: q.limit + 1, after });
    const page = rows.slice(0, q.limit);
    const details = await this.jobs.detailsOf(page);
    return { items: details.map(jobView), nextCursor: rows.length > q.limit ? encodeCursor(page[page.length - 1]!, byTask) : null };
  }

  /**
   * A pending job is cancelled at once (200). A running one is asked to stop (202): the
   * scheduler tells its agent, and the job becomes `cancelled` when the agent reports the exit.
   * A finished job cannot be cancelled (409).
   */
  async cancel(caller: Principal, ref: string): Promise<{ status: 200 | 202; job: JobView }> {
    const job = await this.resolve(caller, ref);
    if (caller.role === 'researcher' && job.user_id !== caller.userId) throw forbidden('researchers cancel only their own jobs');
    if (isTerminal(job.state)) throw conflict(`job is already ${job.state}`);
    const r = await this.cancelLive(caller, [job]);
    if (r.cancelled.length) return { status: 200, job: await this.view(job.id) };
    if (r.stopping.length) return { status: 202, job: await this.view(job.id) };
    const cur = (await this.jobs.find(job.id))!;
    if (isTerminal(cur.state)) throw conflict(`job is already ${cur.state}`);
    throw conflict('the job changed state while it was being cancelled; try again');
  }

  /**
   * Cancels every live job matching all the given filters among those the caller may cancel
   * (researchers: their own; tenant admins: their tenant's; operators: all). Explicit ids must
   * each name one job the caller may cancel (404/409/403 naming it, nothing changed); a finished
   * one is skipped. A fixed number of statements whatever the count (a 10,000-task array too).
   */
  async cancelMany(caller: Principal, c: CancelJobs): Promise<CancelJobsResult> {
    const tenantId = isOperator(caller) ? undefined : caller.tenantId!;
    let userId = caller.role === 'researcher' ? caller.userId : undefined;
    if (c.user) {
      const id = await this.userId(caller, c.user);
      if (userId && id !== userId) throw forbidden(`researchers cancel only their own jobs, not ${c.user}'s`);
      userId = id;
    }
    let ids: string[] | undefined;
    if (c.ids) {
      const jobs = await this.resolveMany(caller, c.ids);
      const theirs = caller.role === 'researcher' ? jobs.find((j) => j.user_id !== caller.userId) : undefined;
      if (theirs) throw forbidden(`job ${theirs.id} is ${theirs.userName}'s: researchers cancel only their own jobs`);
      ids = [...new Set(jobs.map((j) => j.id))];
    }
    const arrayId = c.array ? await this.arrayOf(caller, c.array, 'array') : undefined;
    const candidates = await this.jobs.cancelCandidates({ tenantId, userId, ids, arrayId, name: c.name, states: c.states ?? ['pending', 'running'] });
    return this.cancelLive(caller, candidates);
  }

  /**
   * Pending jobs end `cancelled` at once; running ones are asked to stop (a preemption under
   * way becomes a cancel, so the job is not requeued). A job that moved between the two
   * (started, or requeued) is looked at again. One scheduler wake for the lot.
   */
  private async cancelLive(caller: Principal, jobs: CancelCandidate[]): Promise<CancelJobsResult> {
    const now = this.clock.now();
    const reason = `cancelled by ${caller.userName}`;
    const cancelled: string[] = [];
    const stopping: string[] = [];
    let left = jobs.map((j) => j.id);
    for (let attempt = 0; attempt < 3 && left.length; attempt++) {
      const c = new Set(await this.jobs.cancelPending(left, reason, now));
      left = left.filter((id) => !c.has(id));
      const s = new Set(await this.jobs.requestCancel(left, now));
      left = left.filter((id) => !s.has(id));
      cancelled.push(...c);
      stopping.push(...s);
      // What is left ended meanwhile (nothing to do) or was requeued after the first statement.
      if (left.length) left = (await this.jobs.cancelCandidates({ ids: left, states: ['pending'] })).map((j) => j.id);
    }
    if (cancelled.length || stopping.length) this.wakeups.wake('cancel');
    const byId = new Map(jobs.map((j) => [j.id, j]));
    for (const id of cancelled) this.metrics.recordJobTransition(byId.get(id)!.tenantName, byId.get(id)!.gpu_type, 'pending', 'cancelled');
    return { cancelled: cancelled.sort(), stopping: stopping.sort() };
  }

  /** A user the caller may name in a filter (their tenant's; operators: anyone's); 404 otherwise. */
  private async userId(caller: Principal, name: string): Promise<string> {
    const u = await this.identity.findUser(name);
    if (!u || (!isOperator(caller) && u.tenantId !== caller.tenantId)) throw notFound(`no user ${name}`);
    return u.id;
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
