/**
 * The contracts' plain constants and the parsers of Slurm's array and dependency syntax, in a
 * module without zod: the schemas in api.ts wrap these parsers, and the CLI imports them from
 * here (`@nuri/contracts/constants`) so that it starts without loading a schema library yet
 * checks exactly what the server checks.
 */

/** GPUs per node: jobs of more take whole nodes. */
export const GPUS_PER_NODE = 8;

export const JOB_STATES = ['pending', 'running', 'completed', 'failed', 'cancelled', 'timeout', 'node_failed'] as const;

/**
 * Variables the agent sets itself; a job may not override them: its GPUs, its identity, and
 * the multi-node launch variables `torchrun`/`torch.distributed` read (they must agree on
 * every rank, so one set by hand on one rank would split the job).
 */
export const RESERVED_ENV: readonly string[] = [
  'CUDA_VISIBLE_DEVICES',
  'NVIDIA_VISIBLE_DEVICES',
  'NURI_JOB_ID',
  'NURI_NODE',
  'NURI_NODE_RANK',
  'NURI_NUM_NODES',
  'NURI_NODELIST',
  'NURI_GPUS_PER_NODE',
  'NURI_ARRAY_JOB_ID',
  'NURI_ARRAY_TASK_ID',
  'SLURM_ARRAY_TASK_ID',
  'MASTER_ADDR',
  'MASTER_PORT',
  'WORLD_SIZE',
  'NNODES',
  'NODE_RANK',
  'LOCAL_WORLD_SIZE',
];

/** A batch script's size limit: it travels in the job's row and its start message. */
export const SCRIPT_MAX_BYTES = 256 * 1024;
/** Most tasks one array submission creates. */
export const ARRAY_MAX_TASKS = 10_000;

/** A job reference: a full id, or a unique prefix of at least 6 characters of one. */
export const JOB_REF_PATTERN = /^[0-9a-fA-F][0-9a-fA-F-]{5,35}$/;
export const JOB_REF_RULE = 'a job id, or a unique prefix of at least 6 characters of one';

export const DEPENDENCY_KINDS = ['afterok', 'afternotok', 'afterany'] as const;

/**
 * Why a pending job waits, as data (`JobView.reasonCode`) beside the sentence (`reason`): the
 * scheduling core's codes, then the two the live scheduler decides before the core (a
 * dependency not yet met, an array at its cap on running tasks).
 */
export const PENDING_REASON_CODES = [
  'over_quota_limit',
  'waiting_for_reclaim',
  'waiting_for_resources',
  'behind_higher_ranked',
  'reservation_for_larger_job',
  'no_node_of_type',
  'nodes_unavailable',
  'waiting_for_dependency',
  'array_throttled',
] as const;
export type PendingReasonCodeName = (typeof PENDING_REASON_CODES)[number];

/** `0-99`, `1,3,5`, `0-15:4`, joined by commas, optionally `%N`: sorted unique indices and the cap, or what is wrong. */
export function parseArraySpec(spec: string): { indices: number[]; maxRunning: number | null } | { error: string } {
  const m = /^([0-9][0-9,:-]*)(?:%([0-9]+))?$/.exec(spec.trim());
  if (!m) return { error: 'an array like 0-99, 1,3,5 or 0-15:4, optionally with %N (most running at once)' };
  const indices = new Set<number>();
  for (const part of m[1]!.split(',')) {
    const r = /^([0-9]+)(?:-([0-9]+)(?::([0-9]+))?)?$/.exec(part);
    if (!r) return { error: `"${part}" is not an index, a range a-b or a stepped range a-b:s` };
    const from = Number(r[1]), to = r[2] === undefined ? from : Number(r[2]), step = r[3] === undefined ? 1 : Number(r[3]);
    if (to < from) return { error: `"${part}": the range ends before it starts` };
    if (step < 1) return { error: `"${part}": the step must be at least 1` };
    if (to > 1_000_000) return { error: `"${part}": indices go up to 1000000` };
    for (let i = from; i <= to; i += step) {
      indices.add(i);
      if (indices.size > ARRAY_MAX_TASKS) return { error: `at most ${ARRAY_MAX_TASKS} tasks per array` };
    }
  }
  const maxRunning = m[2] === undefined ? null : Number(m[2]);
  if (maxRunning !== null && (maxRunning < 1 || maxRunning > ARRAY_MAX_TASKS)) return { error: `%N must be between 1 and ${ARRAY_MAX_TASKS}` };
  return { indices: [...indices].sort((a, b) => a - b), maxRunning };
}

/** `afterok:<id>[:<id>…][,afterany:<id>…]` (`?` read as `,`): the conditions, or what is wrong. */
export function parseDependencySpec(spec: string): { kind: (typeof DEPENDENCY_KINDS)[number]; jobs: string[] }[] | { error: string } {
  const out: { kind: (typeof DEPENDENCY_KINDS)[number]; jobs: string[] }[] = [];
  for (const part of spec.split(/[,?]/).map((p) => p.trim()).filter(Boolean)) {
    const [kind, ...ids] = part.split(':');
    const k = DEPENDENCY_KINDS.find((d) => d === kind);
    if (!k) return { error: `"${kind}" is not a dependency type (${DEPENDENCY_KINDS.join(', ')})` };
    if (!ids.length || ids.some((id) => !JOB_REF_PATTERN.test(id))) return { error: `"${part}": give ${kind}:<job id>[:<job id>…] (ids or unique prefixes of at least 6 characters)` };
    out.push({ kind: k, jobs: ids });
  }
  if (!out.length) return { error: 'empty: give e.g. afterok:<job id>' };
  return out;
}
