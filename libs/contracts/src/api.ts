import { z } from 'zod';
import { GPUS_PER_NODE, GpuModel, GpuTypeWanted, int32, JobState, NodeState, PriorityClass, Role, Slug, text } from './common';
import { NodeIsolation } from './wire';

const EnvName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name');
/** Variables the agent sets itself; a job may not override them. */
export const RESERVED_ENV = ['CUDA_VISIBLE_DEVICES', 'NURI_JOB_ID', 'NURI_NODE', 'NVIDIA_VISIBLE_DEVICES'];

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
    command: z.array(text().max(4096)).min(1).max(256),
    env: z
      .record(EnvName, text().max(8192))
      .refine((env) => !Object.keys(env).some((k) => RESERVED_ENV.includes(k)), {
        message: `must not set ${RESERVED_ENV.join(', ')}`,
      })
      .default({}),
    workingDir: text().startsWith('/', 'an absolute path').max(1024).optional(),
    priority: PriorityClass.default('normal'),
    requeue: z.boolean().default(true),
  })
  .strict();
export type SubmitJob = z.infer<typeof SubmitJob>;

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
  placement: z.array(z.object({ node: z.string(), gpus: z.array(z.number()) })),
  transitions: z.array(Transition),
});
export type JobView = z.infer<typeof JobView>;

export const ListJobsQuery = z
  .object({
    state: JobState.optional(),
    tenant: Slug.optional(),
    user: Slug.optional(),
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
    z.object({ index: z.number(), uuid: z.string().nullable(), healthy: z.boolean(), job: z.string().nullable() }),
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
