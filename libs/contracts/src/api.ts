import { z } from 'zod';
import { GpuModel, GpuTypeWanted, int32, JobState, NodeState, PriorityClass, Role, Slug, text } from './common';
import { DEPENDENCY_KINDS, GPUS_PER_NODE, JOB_REF_PATTERN, JOB_REF_RULE, parseArraySpec, PENDING_REASON_CODES, parseDependencySpec, RESERVED_ENV, SCRIPT_MAX_BYTES } from './constants';
import { NodeIsolation } from './wire';

const EnvName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name');

/**
 * A job array as Slurm writes it: `0-99`, `1,3,5`, `0-15:4`, any of them joined by commas,
 * with `%N` at the end to cap how many tasks run at once. Parsed to sorted unique indices.
 */
export const ArraySpec = text()
  .max(1024)
  .transform((spec, ctx) => {
    const r = parseArraySpec(spec);
    if ('error' in r) {
      ctx.addIssue({ code: 'custom', message: r.error });
      return z.NEVER;
    }
    return r;
  });
export type ArraySpec = z.infer<typeof ArraySpec>;

/** What a dependency waits for: `afterok` (every job completed), `afternotok` (every job ended, none completed), `afterany` (every job ended). */
export const DependencyKind = z.enum(DEPENDENCY_KINDS);
export type DependencyKind = z.infer<typeof DependencyKind>;

/** A job reference: a full id, or a unique prefix of at least 6 characters of one. */
export const JobRef = z.string().regex(JOB_REF_PATTERN, JOB_REF_RULE);

/**
 * `afterok:<id>[:<id>…][,afterany:<id>…]` as Slurm writes it (also `?` between kinds, read
 * as `,`: every condition must hold). An id may be a unique prefix; an id that names a job
 * array (its first task) stands for every task of it.
 */
export const DependencySpec = text()
  .max(4096)
  .transform((spec, ctx) => {
    const r = parseDependencySpec(spec);
    if ('error' in r) {
      ctx.addIssue({ code: 'custom', message: r.error });
      return z.NEVER;
    }
    return r;
  });
export type DependencySpec = z.infer<typeof DependencySpec>;

export const SubmitJob = z
  .object({
    name: text().min(1).max(128),
    gpus: z
      .number()
      .int()
      .min(1)
      .max(4096)
      .refine((n) => n <= GPUS_PER_NODE || n % GPUS_PER_NODE === 0, {
        message: `1 to ${GPUS_PER_NODE} GPUs on one node, or a multiple of ${GPUS_PER_NODE} for whole nodes`,
      }),
    gpuType: GpuTypeWanted.default('any'),
    timeLimitSeconds: z.number().int().min(1).max(14 * 24 * 3600),
    /**
     * The job's argv (run without a shell). With `script`, the script's arguments (may be
     * empty); without, required.
     */
    command: z.array(text().max(4096)).max(256).default([]),
    /**
     * A batch script (it must start with `#!`): the agent writes it into the job's directory,
     * executable by the job's user only, and runs it with `command` as its arguments.
     */
    script: text()
      .max(SCRIPT_MAX_BYTES, `at most ${SCRIPT_MAX_BYTES} bytes`)
      .startsWith('#!', 'a script starts with #! naming its interpreter (e.g. #!/bin/bash)')
      .optional(),
    env: z
      .record(EnvName, text().max(8192))
      .refine((env) => !Object.keys(env).some((k) => RESERVED_ENV.includes(k)), {
        message: `must not set ${RESERVED_ENV.join(', ')}`,
      })
      .default({}),
    workingDir: text().startsWith('/', 'an absolute path').max(1024).optional(),
    priority: PriorityClass.default('normal'),
    requeue: z.boolean().default(true),
    /** Submit one job per index (see ArraySpec); the response is the first task. */
    array: ArraySpec.optional(),
    /** Start only once these jobs ended as asked (see DependencySpec). */
    dependency: DependencySpec.optional(),
  })
  .strict()
  .refine((j) => j.script !== undefined || j.command.length > 0, {
    message: 'give the command to run (or a script)',
    path: ['command'],
  });
export type SubmitJob = z.infer<typeof SubmitJob>;
export type SubmitJobInput = z.input<typeof SubmitJob>;

export const Transition = z.object({
  at: z.string(),
  from: JobState.nullable(),
  to: JobState,
  reason: z.string(),
});
export type Transition = z.infer<typeof Transition>;

export const JobView = z.object({
  id: z.string(),
  tenant: z.string(),
  user: z.string(),
  name: z.string(),
  state: JobState,
  reason: z.string().nullable(),
  /** Why a pending job waits, as a code a program can branch on (null once it runs or ends). */
  reasonCode: z.enum(PENDING_REASON_CODES).nullable(),
  gpus: z.number(),
  gpuType: GpuTypeWanted,
  priority: PriorityClass,
  timeLimitSeconds: z.number(),
  command: z.array(z.string()),
  env: z.record(z.string(), z.string()),
  workingDir: z.string().nullable(),
  requeue: z.boolean(),
  submittedAt: z.string(),
  /**
   * When the job last entered the queue: its submission, or its requeue after a preemption or a
   * node failure. The scheduler's starvation threshold (NURI_STARVATION_SECONDS) counts from it.
   */
  queuedAt: z.string(),
  startedAt: z.string().nullable(),
  endedAt: z.string().nullable(),
  exitCode: z.number().nullable(),
  estimatedStartAt: z.string().nullable(),
  queuePosition: z.number().nullable(),
  /** Nodes in rank order (rank r runs on placement[r]); GPU indices per node. */
  placement: z.array(z.object({ node: z.string(), gpus: z.array(z.number()) })),
  transitions: z.array(Transition),
  /** Whether the job was submitted as a batch script (its text is not repeated in the view). */
  script: z.boolean(),
  /** The job's array: `id` is the array's id (its first task's job id), `taskId` this task's index. */
  array: z
    .object({ id: z.string(), taskId: z.number(), size: z.number(), maxRunning: z.number().nullable() })
    .nullable(),
  /**
   * What the job waits for, and whether each condition is met yet. A dependency on a whole
   * array is one entry: `job` is the array's id, `tasks` its size, `state` that of the task
   * deciding it (one that never will meet it, else one still waited on).
   */
  dependencies: z.array(z.object({ kind: DependencyKind, job: z.string(), tasks: z.number(), state: JobState, satisfied: z.boolean() })),
  /**
   * Where the job's output is: one entry per rank (node), readable with GET /v1/jobs/:id/logs
   * while the node's agent keeps it. Empty until the job first started.
   */
  output: z.array(z.object({ rank: z.number(), node: z.string(), path: z.string() })),
});
export type JobView = z.infer<typeof JobView>;

/** `GET /v1/jobs/:id/logs`: the output of one rank as text/plain. */
export const LogsQuery = z
  .object({
    rank: z.coerce.number().int('must be an integer').min(0, 'must be at least 0').max(4095).default(0),
    /** Only the last N lines. */
    tail: z.coerce.number().int('must be an integer').min(0, 'must be at least 0').max(1_000_000).optional(),
    /** Keep the response open and stream new output until the job (this rank) ends. */
    follow: z
      .enum(['true', 'false', '1', '0'], 'true or false')
      .transform((v) => v === 'true' || v === '1')
      .default(false),
  })
  .strict();
export type LogsQuery = z.infer<typeof LogsQuery>;

/**
 * `POST /v1/jobs/cancel`: cancels every job the caller may cancel that matches all the given
 * filters (at least one). Pending jobs end at once; running ones are told to stop.
 */
export const CancelJobs = z
  .object({
    /** Jobs by id or unique prefix. */
    ids: z.array(JobRef).max(10_000).optional(),
    /** Every task of this array (its id, or a unique prefix). */
    array: JobRef.optional(),
    name: text().min(1).max(128).optional(),
    /** Only jobs in these states (live ones only: pending, running). */
    states: z.array(z.enum(['pending', 'running'])).min(1).optional(),
    user: Slug.optional(),
  })
  .strict()
  .refine((c) => c.ids !== undefined || c.array !== undefined || c.name !== undefined || c.states !== undefined || c.user !== undefined, {
    message: 'give at least one of ids, array, name, states, user',
    path: ['ids'],
  });
export type CancelJobs = z.infer<typeof CancelJobs>;
export const CancelJobsResult = z.object({
  /** Pending jobs now cancelled. */
  cancelled: z.array(z.string()),
  /** Running jobs told to stop (they end cancelled when their agents report it). */
  stopping: z.array(z.string()),
});
export type CancelJobsResult = z.infer<typeof CancelJobsResult>;

/** One state or several, comma-separated (`pending,running`). */
const StateList = text()
  .max(200)
  .transform((v, ctx) => {
    const out: JobState[] = [];
    for (const s of v.split(',').map((x) => x.trim())) {
      const r = JobState.safeParse(s);
      if (!r.success) {
        ctx.addIssue({ code: 'custom', message: `"${s}" is not a job state (${JobState.options.join(', ')})` });
        return z.NEVER;
      }
      if (!out.includes(r.data)) out.push(r.data);
    }
    return out;
  });

export const ListJobsQuery = z
  .object({
    state: StateList.optional(),
    tenant: Slug.optional(),
    user: Slug.optional(),
    /** Jobs with exactly this name. */
    name: text().min(1).max(128).optional(),
    /** Tasks of this array (its id or a unique prefix). */
    array: JobRef.optional(),
    limit: z.coerce.number().int().min(1).max(500).default(50),
    /** Opaque cursor from the previous page's `nextCursor`. */
    cursor: text().max(200).optional(),
  })
  .strict();
export type ListJobsQuery = z.infer<typeof ListJobsQuery>;

export const Quota = z
  .object({
    gpuType: GpuModel,
    guaranteed: int32(0),
    limit: int32(0),
  })
  .strict()
  .refine((q) => q.limit >= q.guaranteed, { message: 'limit must be at least guaranteed', path: ['limit'] });
export type Quota = z.infer<typeof Quota>;

export const CreateTenant = z
  .object({
    name: Slug,
    displayName: text().min(1).max(128),
    weight: z.number().positive().max(1000).default(1),
    quotas: z.array(Quota).default([]),
  })
  .strict();
export type CreateTenant = z.infer<typeof CreateTenant>;

export const UpdateTenant = z
  .object({ displayName: text().min(1).max(128).optional(), weight: z.number().positive().max(1000).optional() })
  .strict();
export type UpdateTenant = z.infer<typeof UpdateTenant>;

export const SetQuotas = z.object({ quotas: z.array(Quota).min(1) }).strict();
export type SetQuotas = z.infer<typeof SetQuotas>;

export const TenantView = z.object({
  name: z.string(),
  displayName: z.string(),
  weight: z.number(),
  quotas: z.array(z.object({ gpuType: GpuModel, guaranteed: z.number(), limit: z.number() })),
});
export type TenantView = z.infer<typeof TenantView>;

export const CreateUser = z
  .object({ name: Slug, tenant: Slug.nullable().default(null), role: Role })
  .strict()
  .refine((u) => (u.role === 'operator') === (u.tenant === null), {
    message: 'operators belong to no tenant; researchers and tenant admins belong to one',
    path: ['tenant'],
  });
export type CreateUser = z.infer<typeof CreateUser>;

export const UserView = z.object({
  name: z.string(),
  tenant: z.string().nullable(),
  role: Role,
  createdAt: z.string(),
  /** When the user was disabled (every token of theirs answers 401 until enabled again); null while enabled. */
  disabledAt: z.string().nullable(),
});
export type UserView = z.infer<typeof UserView>;

/** The longest lifetime a token may ask for, whatever the configuration: ten years. */
export const TOKEN_LIFETIME_CAP_SECONDS = 3650 * 24 * 3600;

/**
 * A new token's lifetime: `expiresInDays` or `expiresInSeconds` (not both). It may not outlive
 * the caller's own token nor NURI_TOKEN_MAX_LIFETIME_SECONDS (400 naming the field); when
 * neither is given it lives as long as both allow (no expiry only if neither bounds it).
 */
export const CreateToken = z
  .object({
    user: Slug,
    description: text().max(200).default(''),
    expiresInDays: z.number().int('must be an integer').min(1, 'must be at least 1').max(3650, 'must be at most 3650').optional(),
    expiresInSeconds: z
      .number()
      .int('must be an integer')
      .min(60, 'must be at least 60')
      .max(TOKEN_LIFETIME_CAP_SECONDS, `must be at most ${TOKEN_LIFETIME_CAP_SECONDS}`)
      .optional(),
  })
  .strict()
  .refine((t) => t.expiresInDays === undefined || t.expiresInSeconds === undefined, {
    message: 'give expiresInDays or expiresInSeconds, not both',
    path: ['expiresInSeconds'],
  });
export type CreateToken = z.infer<typeof CreateToken>;

export const TokenView = z.object({
  id: z.string(),
  user: z.string(),
  description: z.string(),
  createdAt: z.string(),
  expiresAt: z.string().nullable(),
  /** The token whose caller created this one (null: made by the server, e.g. bootstrap or demo). */
  issuedBy: z.string().nullable(),
  /** Present only in the response that creates it: the secret is stored hashed. */
  token: z.string().optional(),
});
export type TokenView = z.infer<typeof TokenView>;

export const CreateNode = z
  .object({
    name: Slug,
    gpuType: GpuModel,
    gpus: z.number().int().min(1).max(16).default(GPUS_PER_NODE),
    rack: text().min(1).max(64),
    leafSwitch: text().min(1).max(64),
  })
  .strict();
export type CreateNode = z.infer<typeof CreateNode>;

export const NodeView = z.object({
  name: z.string(),
  gpuType: GpuModel,
  state: NodeState,
  /** Why the node is in its state (the drain reason, "agent never connected"…). */
  stateReason: z.string().optional(),
  rack: z.string(),
  leafSwitch: z.string(),
  lastHeartbeatAt: z.string().nullable(),
  connected: z.boolean(),
  /**
   * The job isolation the node's agent enforces, as it said when it last connected (job
   * cgroups and which limits hold, a uid per job); null until an agent reports it.
   */
  isolation: NodeIsolation.nullable(),
  gpus: z.array(
    z.object({
      index: z.number(),
      uuid: z.string().nullable(),
      healthy: z.boolean(),
      /** Held by a running job, whoever's. */
      allocated: z.boolean(),
      /** That job's id, only for the caller's own tenant (or an operator); null otherwise. */
      job: z.string().nullable(),
    }),
  ),
  /** Present only in the response that registers the node: its agent's token. */
  agentToken: z.string().optional(),
});
export type NodeView = z.infer<typeof NodeView>;

export const DrainNode = z.object({ reason: text().min(1).max(200).default('drained by operator') }).strict();
export type DrainNode = z.infer<typeof DrainNode>;

export const Page = <T extends z.ZodTypeAny>(item: T) => z.object({ items: z.array(item), nextCursor: z.string().nullable() });

/** Every error the API returns has this shape. */
export const ApiError = z.object({
  error: z.string(),
  message: z.string(),
  issues: z.array(z.object({ field: z.string(), rule: z.string() })).optional(),
});
export type ApiError = z.infer<typeof ApiError>;

/** Path parameters and queries of the REST API (every input is parsed, params included). */
export const IdParams = z.object({ id: z.string().uuid() }).strict();
export type IdParams = z.infer<typeof IdParams>;
/** Job routes take a full id or a unique prefix (an ambiguous one is a 409 listing the candidates). */
export const JobParams = z.object({ id: JobRef }).strict();
export type JobParams = z.infer<typeof JobParams>;
export const NameParams = z.object({ name: Slug }).strict();
export type NameParams = z.infer<typeof NameParams>;
export const GpuParams = z.object({ name: Slug, index: z.coerce.number().int().min(0).max(63) }).strict();
export type GpuParams = z.infer<typeof GpuParams>;

export const ListUsersQuery = z.object({ tenant: Slug.optional() }).strict();
export type ListUsersQuery = z.infer<typeof ListUsersQuery>;

export const ListTokensQuery = z.object({ user: Slug.optional() }).strict();
export type ListTokensQuery = z.infer<typeof ListTokensQuery>;

/** `DELETE /v1/tokens/:id?cascade=true` also revokes every token created with it, and theirs in turn. */
export const RevokeTokenQuery = z
  .object({
    cascade: z
      .enum(['true', 'false', '1', '0'], 'true or false')
      .transform((v) => v === 'true' || v === '1')
      .default(false),
  })
  .strict();
export type RevokeTokenQuery = z.infer<typeof RevokeTokenQuery>;

/** The caller, as the API sees them (GET /v1/me). */
export const MeView = z.object({ user: z.string(), tenant: z.string().nullable(), role: Role });
export type MeView = z.infer<typeof MeView>;

// Accounting: usage, prices, statements, history, quota, idle jobs.
export * from './usage';
