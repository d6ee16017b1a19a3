/** What each command does once its flags are parsed: one request or a few, then text (or --json). */
import type { CancelJobsResult, JobView, NodeView, UserView } from '@nuri/contracts';
import type { NuriClient } from './client';
import { ApiError, UsageError } from './errors';
import { clock, humanDuration, JobStateName, parseStates, REASON_LABEL, shortId, STATE_CODE, table, when } from './format';

export interface Ctx {
  client: () => NuriClient;
  out: (line: string) => void;
  err: (line: string) => void;
  /** Raw bytes to stdout (logs). */
  write: (chunk: Buffer) => void;
  env: NodeJS.ProcessEnv;
  cwd: string;
  now: () => Date;
  /** Aborted on Ctrl-C (logs -f ends cleanly). */
  signal?: AbortSignal;
}

const json = (ctx: Ctx, v: unknown) => ctx.out(JSON.stringify(v, null, 2));
type Me = { user: string; tenant: string | null; role: string };
type Page = { items: JobView[]; nextCursor: string | null };

/** `<arrayid>_<task>` (Slurm's way to name one task) to that task's id; anything else goes to the server as is. */
export async function resolveRef(ctx: Ctx, ref: string): Promise<string> {
  const m = /^([0-9a-fA-F][0-9a-fA-F-]{5,35})_(\d+)$/.exec(ref);
  if (!m) return ref;
  let cursor: string | null = null;
  do {
    const q = new URLSearchParams({ array: m[1]!, limit: '500', ...(cursor ? { cursor } : {}) });
    const page: Page = await ctx.client().call<Page>('GET', `/v1/jobs?${q}`);
    const task = page.items.find((j) => j.array?.taskId === Number(m[2]));
    if (task) return task.id;
    cursor = page.nextCursor;
  } while (cursor);
  throw new Error(`${ref}: array ${m[1]} has no task ${m[2]}`);
}

export async function submit(ctx: Ctx, body: object, warnings: string[], asJson: boolean): Promise<void> {
  for (const w of warnings) ctx.err(`nuri: warning: ${w}`);
  const job = await ctx.client().call<JobView>('POST', '/v1/jobs', body);
  if (asJson) return json(ctx, job);
  if (job.array) {
    const cap = job.array.maxRunning ? `, at most ${job.array.maxRunning} at once` : '';
    ctx.out(`submitted array ${job.array.id} (${job.name}): ${job.array.size} tasks${cap}; tasks are ${shortId(job.array.id)}_<index>`);
  } else ctx.out(`submitted ${job.id} (${job.name}): ${job.state}`);
}

export interface JobsOpts {
  all?: boolean;
  state?: string;
  name?: string;
  user?: string;
  tenant?: string;
  array?: string;
  expand?: boolean;
  limit?: string;
  after?: string;
  json?: boolean;
}

export async function jobs(ctx: Ctx, o: JobsOpts, hintArgs: string[]): Promise<void> {
  const q = new URLSearchParams();
  if (o.state) q.set('state', parseStates('--state', o.state).join(','));
  else if (!o.all) q.set('state', 'pending,running');
  if (o.limit !== undefined) {
    if (!/^\d+$/.test(o.limit) || Number(o.limit) < 1 || Number(o.limit) > 500) throw new UsageError(`--limit: "${o.limit}" is not a whole number from 1 to 500`);
    q.set('limit', o.limit);
  }
  for (const k of ['name', 'user', 'tenant', 'array'] as const) if (o[k] !== undefined) q.set(k, o[k]!);
  if (o.after) q.set('cursor', o.after);
  const [page, me] = await Promise.all([
    ctx.client().call<Page>('GET', `/v1/jobs?${q}`),
    o.json ? undefined : ctx.client().call<Me>('GET', '/v1/me'),
  ]);
  if (o.json) return json(ctx, page);
  const now = ctx.now();
  const operator = me?.role === 'operator';
  const head = ['ID', 'NAME', 'USER', ...(operator ? ['TENANT'] : []), 'STATE', 'GPUS', 'TYPE', 'ELAPSED', 'TIME LEFT', 'NODES / REASON'];
  const rows = [head];
  const row = (id: string, j: JobView, state: string, elapsed: string, left: string, info: string) =>
    rows.push([id, j.name, j.user, ...(operator ? [j.tenant] : []), state, String(j.gpus), j.gpuType, elapsed, left, info]);
  const seen = new Set<string>();
  for (const j of page.items) {
    if (j.array && !o.expand) {
      // One row per array: how many of its tasks (on this page) are in each state.
      if (seen.has(j.array.id)) continue;
      seen.add(j.array.id);
      const tasks = page.items.filter((t) => t.array?.id === j.array!.id);
      const counts = new Map<JobStateName, number>();
      for (const t of tasks) counts.set(t.state, (counts.get(t.state) ?? 0) + 1);
      const order: JobStateName[] = ['running', 'pending', 'completed', 'failed', 'cancelled', 'timeout', 'node_failed'];
      const state = order.filter((s) => counts.has(s)).map((s) => `${counts.get(s)} ${STATE_CODE[s]}`).join(', ');
      const cap = j.array.maxRunning ? `, at most ${j.array.maxRunning} at once` : '';
      row(shortId(j.array.id), j, state, '-', '-', `array of ${j.array.size}${cap} (nuri jobs --array ${shortId(j.array.id)} -r)`);
      continue;
    }
    const id = j.array ? `${shortId(j.array.id)}_${j.array.taskId}` : shortId(j.id);
    const { elapsed, left } = times(j, now);
    row(id, j, STATE_CODE[j.state], elapsed, left, info(j, now));
  }
  table(rows).forEach((l) => ctx.out(l));
  if (!page.items.length) ctx.err(o.all || o.state ? 'no jobs' : 'no pending or running jobs (--all for every state)');
  // Quoted as a shell needs it, so the hint can be pasted back.
  const sh = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
  if (page.nextCursor) ctx.err(`more: nuri jobs ${[...hintArgs, '--after', page.nextCursor].map(sh).join(' ')}`);
}

function times(j: JobView, now: Date): { elapsed: string; left: string } {
  if (!j.startedAt) return { elapsed: '-', left: j.state === 'pending' ? clock(j.timeLimitSeconds) : '-' };
  const end = j.endedAt ? new Date(j.endedAt) : now;
  const ran = (end.getTime() - new Date(j.startedAt).getTime()) / 1000;
  // A requeued job's startedAt is its latest start; pending again means it has not run since.
  if (j.state === 'pending') return { elapsed: '-', left: clock(j.timeLimitSeconds) };
  return { elapsed: clock(ran), left: j.state === 'running' ? clock(j.timeLimitSeconds - ran) : '-' };
}

function info(j: JobView, now: Date): string {
  if (j.state === 'pending') {
    // The reason's code, as squeue shows one; before the scheduler's first word, why it is queued.
    const why = j.reasonCode ? `(${REASON_LABEL[j.reasonCode]})` : (j.reason ?? '');
    const parts = [j.queuePosition !== null ? `#${j.queuePosition}` : '', j.estimatedStartAt ? `starts ${when(j.estimatedStartAt, now)}` : '', why];
    return parts.filter(Boolean).join(' ');
  }
  if (j.state === 'running') return j.placement.map((p) => p.node).join(',');
  return j.reason ?? (j.exitCode !== null ? `exit code ${j.exitCode}` : '');
}

export async function show(ctx: Ctx, ref: string, asJson: boolean): Promise<void> {
  const id = await resolveRef(ctx, ref);
  const j = await ctx.client().call<JobView>('GET', `/v1/jobs/${encodeURIComponent(id)}`);
  if (asJson) return json(ctx, j);
  const now = ctx.now();
  ctx.out(`${j.name} (${j.id}) — ${j.tenant}/${j.user}`);
  ctx.out(`  state:     ${j.state}${j.reasonCode ? ` (${REASON_LABEL[j.reasonCode]})` : ''}${j.reason ? ` — ${j.reason}` : ''}`);
  if (j.state === 'pending') {
    ctx.out(`  queue:     position ${j.queuePosition ?? '?'}`);
    // A requeued job waits again from its requeue; say so, or "waiting since" looks wrong.
    ctx.out(`  waiting:   since ${when(j.queuedAt, now)}${j.queuedAt !== j.submittedAt ? ' (requeued)' : ''}`);
    ctx.out(`  starts:    ${j.estimatedStartAt ? `${when(j.estimatedStartAt, now)} (${j.estimatedStartAt})` : 'no estimate yet'}`);
  }
  const nodes = j.gpus > 8 ? ` on ${j.gpus / 8} nodes` : '';
  ctx.out(`  asks for:  ${j.gpus} × ${j.gpuType} GPU${nodes}, ${j.priority} priority, time limit ${humanDuration(j.timeLimitSeconds)}`);
  ctx.out(`  command:   ${j.script ? `batch script${j.command.length ? ` with arguments ${JSON.stringify(j.command)}` : ''}` : JSON.stringify(j.command)}`);
  if (j.workingDir) ctx.out(`  workdir:   ${j.workingDir}`);
  if (j.array) {
    const cap = j.array.maxRunning ? `, at most ${j.array.maxRunning} at once` : '';
    ctx.out(`  array:     task ${j.array.taskId} of array ${j.array.id} (${j.array.size} tasks${cap}); this task is ${shortId(j.array.id)}_${j.array.taskId}`);
  }
  for (const d of j.dependencies ?? [])
    ctx.out(`  after:     ${d.kind} ${d.job}${d.tasks > 1 ? ` (array of ${d.tasks} tasks, deciding: ${d.state})` : ` (${d.state})`} — ${d.satisfied ? 'met' : 'not met yet'}`);
  if (j.placement.length) ctx.out(`  placed on: ${j.placement.map((p) => `${p.node} GPUs ${p.gpus.join(',')}`).join('; ')}`);
  if (j.startedAt) ctx.out(`  started:   ${when(j.startedAt, now)}${j.endedAt ? `, ended ${when(j.endedAt, now)}` : ''}`);
  if (j.exitCode !== null) ctx.out(`  exit code: ${j.exitCode}`);
  const ref8 = j.array ? `${shortId(j.array.id)}_${j.array.taskId}` : shortId(j.id);
  if (j.output?.length) {
    ctx.out('  output:    (stdout and stderr, kept on the node by its agent)');
    for (const o of j.output) ctx.out(`    rank ${o.rank} on ${o.node}: ${o.path}`);
    const more = j.output.length > 1 ? ` [--rank 0..${j.output.length - 1}]` : '';
    ctx.out(`  read it:   nuri logs ${ref8}${more}${j.state === 'running' ? ' (-f to follow)' : ''}`);
  } else ctx.out(`  output:    none yet; once the job runs: nuri logs ${ref8}${j.state === 'pending' ? ' -f' : ''}`);
  ctx.out('  history:');
  for (const t of j.transitions) ctx.out(`    ${t.at}  ${t.from ?? '-'} → ${t.to}  (${t.reason})`);
}

export async function logs(ctx: Ctx, ref: string, o: { follow?: boolean; rank?: string; tail?: string }): Promise<void> {
  const q = new URLSearchParams();
  if (o.rank !== undefined) {
    if (!/^\d+$/.test(o.rank)) throw new UsageError(`--rank: "${o.rank}" is not a rank (0, 1, ...: one per node, in placement order)`);
    q.set('rank', o.rank);
  }
  if (o.tail !== undefined) {
    if (!/^\d+$/.test(o.tail)) throw new UsageError(`--tail: "${o.tail}" is not a number of lines`);
    q.set('tail', o.tail);
  }
  if (o.follow) q.set('follow', 'true');
  const id = await resolveRef(ctx, ref);
  const path = `/v1/jobs/${encodeURIComponent(id)}/logs${q.size ? `?${q}` : ''}`;
  if (!o.follow) return ctx.client().stream(path, ctx.write, ctx.signal);
  // Following a job that has not started (or whose agent has not opened its output yet)
  // waits for it, as `tail -f` on a Slurm output file would, instead of refusing.
  let said = false;
  let startedAt = 0;
  for (;;) {
    try {
      return await ctx.client().stream(path, ctx.write, ctx.signal);
    } catch (e) {
      if (ctx.signal?.aborted || !(e instanceof ApiError)) throw e;
      const j = await ctx.client().call<JobView>('GET', `/v1/jobs/${encodeURIComponent(id)}`);
      const notYet = e.status === 409 && j.state === 'pending';
      // Just started: the agent may not have opened the output yet; give it a few seconds.
      const opening = e.status === 404 && j.state === 'running' && (startedAt ||= Date.now()) > Date.now() - 10_000;
      if (!notYet && !opening) throw e;
      if (notYet && !said) {
        ctx.err(`nuri: job ${shortId(j.id)} is pending${j.reason ? ` (${j.reason})` : ''}; its output follows once it starts (Ctrl-C to stop)`);
        said = true;
      }
      if (!(await pause(notYet ? 2000 : 500, ctx.signal))) return;
    }
  }
}

/** Waits `ms` unless `signal` aborts first; false when it did. */
function pause(ms: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const t = setTimeout(() => resolve(true), ms);
    signal?.addEventListener('abort', () => (clearTimeout(t), resolve(false)), { once: true });
  });
}

export interface CancelOpts {
  name?: string;
  state?: string;
  user?: string;
  json?: boolean;
}

export async function cancel(ctx: Ctx, refs: string[], o: CancelOpts): Promise<void> {
  const filters: { name?: string; states?: string[]; user?: string } = {};
  if (o.name !== undefined) filters.name = o.name;
  if (o.user !== undefined) filters.user = o.user;
  if (o.state !== undefined) {
    const states = parseStates('--state', o.state);
    const bad = states.filter((s) => s !== 'pending' && s !== 'running');
    if (bad.length) throw new UsageError(`--state: only live jobs can be cancelled: pending (PD) and running (R), not ${bad.join(', ')}`);
    filters.states = states;
  }
  if (!refs.length && !Object.keys(filters).length)
    throw new UsageError('say what to cancel: job ids (or <array>_<task>), or --name, --state, --user (all given must match)');
  // An array's own id cancels every task of it; <array>_<task> one task; other ids the job itself.
  const ids: string[] = [];
  const arrays: string[] = [];
  const ended: string[] = [];
  for (const ref of refs) {
    const id = await resolveRef(ctx, ref);
    const j = await ctx.client().call<JobView>('GET', `/v1/jobs/${encodeURIComponent(id)}`);
    if (j.array && j.array.id === j.id && id === ref) arrays.push(j.id);
    else if (j.state === 'pending' || j.state === 'running') ids.push(j.id);
    else ended.push(`${shortId(j.id)} (${j.state})`);
  }
  const result: CancelJobsResult = { cancelled: [], stopping: [] };
  const send = async (body: object) => {
    const r = await ctx.client().call<CancelJobsResult>('POST', '/v1/jobs/cancel', { ...body, ...filters });
    result.cancelled.push(...r.cancelled);
    result.stopping.push(...r.stopping);
  };
  if (ids.length) await send({ ids });
  for (const array of arrays) await send({ array });
  if (!refs.length) await send({});
  if (o.json) return json(ctx, result);
  const n = (k: number, what: string) => `${k} ${what}${k === 1 ? '' : 's'}`;
  if (!result.cancelled.length && !result.stopping.length) {
    if (!ended.length) ctx.out('nothing to cancel: no pending or running job matched');
  } else {
    const parts = [];
    if (result.cancelled.length) parts.push(`cancelled ${n(result.cancelled.length, 'pending job')}`);
    if (result.stopping.length) parts.push(`stopping ${n(result.stopping.length, 'running job')} (SIGTERM, then SIGKILL after the grace period)`);
    ctx.out(parts.join('; '));
    if (result.cancelled.length + result.stopping.length <= 20)
      ctx.out(`  ${[...result.cancelled, ...result.stopping].map(shortId).join(' ')}`);
  }
  if (ended.length) ctx.out(`already ended: ${ended.join(', ')}`);
}

export async function nodes(ctx: Ctx, asJson: boolean): Promise<void> {
  const list = await ctx.client().call<NodeView[]>('GET', '/v1/nodes');
  if (asJson) return json(ctx, list);
  const rows = [['NODE', 'TYPE', 'STATE', 'FREE', 'ALLOCATED', 'UNHEALTHY', 'LEAF', 'YOUR JOBS']];
  for (const n of list) {
    // Every held GPU counts as allocated, whoever holds it; job ids appear for your own tenant only.
    const held = (g: NodeView['gpus'][number]) => g.allocated ?? g.job !== null;
    const mine = [...new Set(n.gpus.map((g) => g.job).filter((j): j is string => !!j).map(shortId))];
    rows.push([
      n.name,
      n.gpuType,
      n.state,
      `${n.gpus.filter((g) => g.healthy && !held(g)).length}/${n.gpus.length}`,
      String(n.gpus.filter(held).length),
      String(n.gpus.filter((g) => !g.healthy).length),
      n.leafSwitch,
      mine.join(',') || '-',
    ]);
  }
  table(rows).forEach((l) => ctx.out(l));
}

export async function usersList(ctx: Ctx, tenant: string | undefined, asJson: boolean): Promise<void> {
  const users = await ctx.client().call<UserView[]>('GET', `/v1/users${tenant ? `?${new URLSearchParams({ tenant })}` : ''}`);
  if (asJson) return json(ctx, users);
  const rows = [['USER', 'TENANT', 'ROLE', 'STATUS']];
  for (const u of users) rows.push([u.name, u.tenant ?? '-', u.role, u.disabledAt ? `disabled since ${u.disabledAt}` : 'enabled']);
  table(rows).forEach((l) => ctx.out(l));
}

export async function userAction(ctx: Ctx, action: 'disable' | 'enable', name: string, asJson: boolean): Promise<void> {
  const u = await ctx.client().call<UserView>('POST', `/v1/users/${encodeURIComponent(name)}/${action}`);
  if (asJson) return json(ctx, u);
  ctx.out(u.disabledAt ? `disabled ${u.name} (since ${u.disabledAt}): every token of theirs is refused` : `enabled ${u.name}: their unexpired, unrevoked tokens work again`);
}

export async function whoami(ctx: Ctx, asJson: boolean): Promise<void> {
  const me = await ctx.client().call<Me>('GET', '/v1/me');
  if (asJson) return json(ctx, me);
  ctx.out(`${me.user} (${me.role}${me.tenant ? ` in ${me.tenant}` : ''})`);
}
