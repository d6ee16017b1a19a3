import { Rng } from './prng';

/**
 * What a chaos job does, which decides how it must end:
 *   ok             sleeps a few seconds, exits 0              -> completed
 *   fail           sleeps, exits 3                             -> failed, exit code 3
 *   timeout        sleeps far past its time limit              -> timeout
 *   cancel-running runs long; the harness cancels it once it runs  -> cancelled (see invariants)
 *   cancel-pending the harness cancels it right after submitting   -> cancelled
 * A cancel answered 409 (the job had already ended) leaves the `ok` expectation.
 */
export type JobKind = 'ok' | 'fail' | 'timeout' | 'cancel-running' | 'cancel-pending';

export interface JobSpec {
  index: number;
  /** Unique in the run: how a submit whose answer was lost (api killed) is found again. */
  name: string;
  tenant: string;
  gpus: number;
  gpuType: 'h100' | 'h800' | 'any';
  kind: JobKind;
  sleepSeconds: number;
  timeLimitSeconds: number;
  requeue: boolean;
  priority: 'low' | 'normal' | 'high';
  /** Submission time, from the start of the fault phase. */
  submitAtMs: number;
  /** cancel-running: how long after it is seen running the cancel goes out. */
  cancelDelayMs: number;
  command: string[];
}

export const FAIL_EXIT_CODE = 3;

export interface WorkloadOptions {
  seed: number;
  jobs: number;
  /** Submissions are spread over this window. */
  submitWindowMs: number;
  tenants: readonly string[];
  /** Whether h800 nodes exist (else every job asks for h100 or any). */
  h800: boolean;
  runTag: string;
}

export function makeWorkload(o: WorkloadOptions): JobSpec[] {
  const rng = new Rng(o.seed, 1);
  const out: JobSpec[] = [];
  for (let i = 0; i < o.jobs; i++) {
    const size = rng.weighted({ one: 30, two: 10, four: 10, node: 28, twoNodes: 22 });
    const gpus = { one: 1, two: 2, four: 4, node: 8, twoNodes: 16 }[size];
    const gpuType: JobSpec['gpuType'] = o.h800 && gpus <= 8 ? rng.weighted({ h100: 60, h800: 20, any: 20 }) : rng.weighted({ h100: 80, any: 20 });
    const kind = rng.weighted<JobKind>({ ok: 56, fail: 12, timeout: 12, 'cancel-running': 15, 'cancel-pending': 5 });
    let sleepSeconds: number;
    let timeLimitSeconds: number;
    let script: string;
    switch (kind) {
      case 'ok':
        sleepSeconds = rng.int(4, 14);
        timeLimitSeconds = sleepSeconds + rng.int(15, 30);
        script = `sleep ${sleepSeconds}; exit 0`;
        break;
      case 'fail':
        sleepSeconds = rng.int(1, 4);
        timeLimitSeconds = sleepSeconds + rng.int(15, 30);
        script = `sleep ${sleepSeconds}; exit ${FAIL_EXIT_CODE}`;
        break;
      case 'timeout':
        timeLimitSeconds = rng.int(3, 6);
        sleepSeconds = 300;
        script = `sleep ${sleepSeconds}; exit 0`;
        break;
      default:
        sleepSeconds = rng.int(10, 20);
        timeLimitSeconds = sleepSeconds + rng.int(15, 30);
        script = `sleep ${sleepSeconds}; exit 0`;
    }
    out.push({
      index: i,
      name: `chaos-${o.runTag}-${i}`,
      tenant: rng.pick(o.tenants),
      gpus,
      gpuType,
      kind,
      sleepSeconds,
      timeLimitSeconds,
      requeue: !rng.chance(0.2),
      priority: rng.weighted({ low: 20, normal: 60, high: 20 }),
      submitAtMs: Math.round(rng.uniform(0, o.submitWindowMs)),
      cancelDelayMs: Math.round(rng.uniform(500, 3000)),
      command: ['sh', '-c', script],
    });
  }
  return out.sort((a, b) => a.submitAtMs - b.submitAtMs || a.index - b.index);
}

/** Nodes a job spans: one up to 8 GPUs, else whole nodes. */
export const nodesOf = (gpus: number): number => (gpus <= 8 ? 1 : gpus / 8);
