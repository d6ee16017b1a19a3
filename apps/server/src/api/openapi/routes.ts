import {
  ApiError,
  CancelJobs,
  CancelJobsResult,
  CreateNode,
  CreateTenant,
  CreateToken,
  CreateUser,
  DrainNode,
  IdParams,
  JobParams,
  JobView,
  ListJobsQuery,
  ListTokensQuery,
  ListUsersQuery,
  LogsQuery,
  RevokeTokenQuery,
  MeView,
  GpuParams,
  NameParams,
  NodeView,
  Page,
  SetQuotas,
  SubmitJob,
  TenantView,
  TokenView,
  UpdateTenant,
  UserView,
} from '@nuri/contracts';
import { z } from 'zod';
import type { RoleName } from '../../auth/principal';
import { USAGE_ROUTES } from '../usage/routes';

export interface RouteDoc {
  method: 'get' | 'post' | 'put' | 'patch' | 'delete';
  /** Express-style path, e.g. /v1/jobs/:id */
  path: string;
  summary: string;
  /** false: no token needed. Otherwise the roles allowed (all when omitted). */
  auth?: false | RoleName[];
  params?: z.ZodObject;
  query?: z.ZodObject;
  body?: z.ZodType;
  /** Success status → response schema (null: no body). */
  responses: Record<number, z.ZodType | null>;
  /** Served by another module than the API (documented here so the document is complete). */
  external?: boolean;
  /** A non-JSON success body, e.g. text/plain. */
  contentType?: string;
}

const Health = z.object({ status: z.literal('ok') });

/** Every route the API serves. The OpenAPI document is generated from this table and the zod schemas. */
export const ROUTES: RouteDoc[] = [
  { method: 'get', path: '/healthz', summary: 'Liveness', auth: false, responses: { 200: Health } },
  { method: 'get', path: '/v1/openapi.json', summary: 'This OpenAPI 3.1 document', auth: false, responses: { 200: z.object({}).passthrough() } },
  { method: 'get', path: '/metrics', summary: 'Prometheus metrics (text exposition format); with NURI_METRICS_TOKEN set it wants `Authorization: Bearer <NURI_METRICS_TOKEN>` (401 otherwise), not an API token', auth: false, external: true, contentType: 'text/plain', responses: { 200: z.string() } },
  { method: 'get', path: '/v1/me', summary: 'The caller (user, tenant, role)', responses: { 200: MeView } },

  { method: 'post', path: '/v1/jobs', summary: "Submit a job to the caller's tenant (not operators: they belong to no tenant)", body: SubmitJob, responses: { 201: JobView } },
  {
    method: 'get',
    path: '/v1/jobs',
    summary: "List jobs, newest first (the caller's tenant; operators all or ?tenant=); ?state= takes several states comma-separated; ?array= lists one array's tasks by index",
    query: ListJobsQuery,
    responses: { 200: Page(JobView) },
  },
  {
    method: 'post',
    path: '/v1/jobs/cancel',
    summary:
      'Cancel every live job matching all the filters given, among those the caller may cancel (researchers: their own; tenant admins: their tenant\'s; operators: all): pending ones at once, running ones told to stop. An id that names no job (404), several (409) or one the caller may not cancel (403) changes nothing',
    body: CancelJobs,
    responses: { 200: CancelJobsResult },
  },
  {
    method: 'get',
    path: '/v1/jobs/:id',
    summary: 'A job with its state, reason, placement, transitions and estimated start; :id is a full id or a unique prefix of at least 6 characters (ambiguous: 409 listing the candidates)',
    params: JobParams,
    responses: { 200: JobView },
  },
  {
    method: 'post',
    path: '/v1/jobs/:id/cancel',
    summary: 'Cancel a job (full id or unique prefix): pending → cancelled at once (200); running → stop requested (202); finished → 409. Researchers cancel only their own jobs',
    params: JobParams,
    responses: { 200: JobView, 202: JobView },
  },
  {
    method: 'get',
    path: '/v1/jobs/:id/logs',
    summary:
      "One rank's output (stdout and stderr interleaved as written) as text/plain, read from its node's agent: ?rank= (default 0; the rank-th node of the placement), ?tail= last lines, ?follow=true streams until that rank's process ends. 409 before the job first started, 404 once the agent's retention removed it, 503 naming the node when its agent is not connected",
    params: JobParams,
    query: LogsQuery,
    contentType: 'text/plain',
    responses: { 200: z.string() },
  },
  {
    method: 'get',
    path: '/internal/v1/logs',
    summary:
      'Gateway processes only: relays a job output to the api replica that asked, with the single-use grant it wrote (Authorization: Bearer <grant>; 401 otherwise). Not for users: GET /v1/jobs/{id}/logs',
    auth: false,
    external: true,
    contentType: 'text/plain',
    responses: { 200: z.string() },
  },

  { method: 'get', path: '/v1/nodes', summary: "Nodes with their GPUs; a GPU's job id shows only to the job's tenant", responses: { 200: z.array(NodeView) } },
  { method: 'get', path: '/v1/nodes/:name', summary: 'A node', params: NameParams, responses: { 200: NodeView } },
  { method: 'post', path: '/v1/nodes', summary: "Register a node; the response carries its agent's token, once", auth: ['operator'], body: CreateNode, responses: { 201: NodeView } },
  { method: 'post', path: '/v1/nodes/:name/drain', summary: 'Drain a node: running jobs keep running, nothing new is placed', auth: ['operator'], params: NameParams, body: DrainNode, responses: { 200: NodeView } },
  { method: 'post', path: '/v1/nodes/:name/return', summary: 'Return a drained node to service (a down node stays down until its agent is back)', auth: ['operator'], params: NameParams, responses: { 200: NodeView } },
  { method: 'post', path: '/v1/nodes/:name/gpus/:index/return', summary: 'Return a GPU taken out of scheduling by a fault (critical XID, row-remap failure, vanished) to service; recorded as a health event', auth: ['operator'], params: GpuParams, responses: { 200: NodeView } },

  { method: 'get', path: '/v1/tenants', summary: 'Tenants (operators: all; others: their own)', responses: { 200: z.array(TenantView) } },
  { method: 'get', path: '/v1/tenants/:name', summary: 'A tenant with its quotas', params: NameParams, responses: { 200: TenantView } },
  { method: 'post', path: '/v1/tenants', summary: 'Create a tenant', auth: ['operator'], body: CreateTenant, responses: { 201: TenantView } },
  { method: 'patch', path: '/v1/tenants/:name', summary: "Change a tenant's display name or weight", auth: ['operator'], params: NameParams, body: UpdateTenant, responses: { 200: TenantView } },
  { method: 'put', path: '/v1/tenants/:name/quotas', summary: 'Set quotas for the GPU types given', auth: ['operator'], params: NameParams, body: SetQuotas, responses: { 200: TenantView } },

  { method: 'get', path: '/v1/users', summary: "Users (operators: all or ?tenant=; tenant admins: their tenant's)", auth: ['operator', 'tenant-admin'], query: ListUsersQuery, responses: { 200: z.array(UserView) } },
  { method: 'post', path: '/v1/users', summary: 'Create a user (tenant admins: researchers and tenant admins of their tenant)', auth: ['operator', 'tenant-admin'], body: CreateUser, responses: { 201: UserView } },
  {
    method: 'post',
    path: '/v1/users/:name/disable',
    summary: "Disable a user: every token of theirs answers 401 at once (operators: anyone but themselves; tenant admins: their tenant's researchers)",
    auth: ['operator', 'tenant-admin'],
    params: NameParams,
    responses: { 200: UserView },
  },
  { method: 'post', path: '/v1/users/:name/enable', summary: 'Enable a disabled user again: their unexpired, unrevoked tokens work again', auth: ['operator', 'tenant-admin'], params: NameParams, responses: { 200: UserView } },

  {
    method: 'post',
    path: '/v1/tokens',
    summary:
      'Create an API token for yourself or a user you manage; the secret is in this response only. It expires no later than the token you call with, nor past NURI_TOKEN_MAX_LIFETIME_SECONDS (a longer lifetime asked is 400; none asked: the longest allowed)',
    body: CreateToken,
    responses: { 201: TokenView },
  },
  { method: 'get', path: '/v1/tokens', summary: 'Live tokens of yourself or of ?user= you manage', query: ListTokensQuery, responses: { 200: z.array(TokenView) } },
  { method: 'delete', path: '/v1/tokens/:id', summary: 'Revoke a token; ?cascade=true also every token created with it, and theirs in turn', params: IdParams, query: RevokeTokenQuery, responses: { 204: null } },
  ...USAGE_ROUTES,
];

export { ApiError };
