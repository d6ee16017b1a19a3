import { Rng } from './prng';

/**
 * The faults the harness injects. Each is drawn from the seed up front (time, kind, a draw
 * that picks the target among those up at that moment, how long the target stays down).
 *   kill-scheduler  kill -9 of the leading scheduler (nuri_scheduler_leader on /metrics), restarted after a delay
 *   kill-gateway    kill -9 of one of the two gateways, restarted on the same port
 *   kill-api        kill -9 of the api process, restarted on the same port
 *   kill-agent      kill -9 of an agent, restarted with the same work dir (its journal and running.json)
 *   stop-agent      SIGSTOP of an agent for longer than NURI_NODE_DOWN_AFTER_SECONDS, then SIGCONT
 *   pg-terminate    pg_terminate_backend of a random share of the run database's connections
 */
export const FAULT_KINDS = ['kill-scheduler', 'kill-gateway', 'kill-api', 'kill-agent', 'stop-agent', 'pg-terminate'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface PlannedFault {
  atMs: number;
  kind: FaultKind;
  /** In [0, 1): picks the target among the candidates up at that moment. */
  pick: number;
  /** Killed: how long until restarted; stopped: how long until SIGCONT. 0 for pg-terminate. */
  downMs: number;
  /** pg-terminate: the share of connections terminated. */
  share: number;
}

export interface FaultPlanOptions {
  seed: number;
  durationMs: number;
  nodeDownAfterSeconds: number;
  /** Gap between faults, uniform in [minGapMs, maxGapMs]. */
  minGapMs?: number;
  maxGapMs?: number;
}

const WEIGHTS: Record<FaultKind, number> = { 'kill-scheduler': 2, 'kill-gateway': 2, 'kill-api': 1, 'kill-agent': 3, 'stop-agent': 2, 'pg-terminate': 2 };

export function planFaults(o: FaultPlanOptions): PlannedFault[] {
  const rng = new Rng(o.seed, 2);
  const minGap = o.minGapMs ?? 2500;
  const maxGap = o.maxGapMs ?? 6000;
  // Every kind once first (shuffled), so even a short run sees each; then weighted draws.
  const first = [...FAULT_KINDS];
  for (let i = first.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [first[i], first[j]] = [first[j]!, first[i]!];
  }
  const out: PlannedFault[] = [];
  let at = rng.uniform(1500, 3000);
  while (at < o.durationMs) {
    const kind = out.length < first.length ? first[out.length]! : rng.weighted(WEIGHTS);
    const downMs =
      kind === 'stop-agent'
        ? Math.round((o.nodeDownAfterSeconds + rng.uniform(2, 8)) * 1000)
        : kind === 'pg-terminate'
          ? 0
          : Math.round(rng.uniform(500, kind === 'kill-agent' ? 3000 : 3500));
    out.push({ atMs: Math.round(at), kind, pick: rng.next(), downMs, share: kind === 'pg-terminate' ? rng.uniform(0.3, 1) : 0 });
    at += rng.uniform(minGap, maxGap);
  }
  return out;
}
