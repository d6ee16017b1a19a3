/**
 * A scheduler that keeps state between passes, for a caller that runs one pass after another
 * (the live scheduler, the simulator). `plan(snapshot)` always returns exactly what the pure
 * `schedule(snapshot)` returns for that snapshot; the state only saves work:
 *  - the cluster (node order, leaf groups, per-node free GPUs, held GPUs and running jobs, and
 *    per-node fit-time caches): kept while the node set is unchanged (compared by content: ids,
 *    type, topology, state and GPU health) and brought up to date from the difference in running
 *    jobs (by id and content); only nodes those jobs or the previous pass touched are reset.
 *    A caller that builds fresh node and job objects every pass (as one reading from the
 *    database does) still gets the reuse.
 *
 * Usage: keep one instance per scheduler process and call `plan(snapshot)` instead of
 * `schedule(snapshot)` once per pass.
 */
import { Cluster } from './cluster';
import { graceOf, planOn } from './policy';
import { Plan, PlanOptions, Snapshot, SnapshotNode } from './types';

export class Scheduler {
  private nodes: readonly SnapshotNode[] | null = null;
  private cluster: Cluster | null = null;

  /** `opts.until`: see PlanOptions (the state kept is the same either way). */
  plan(snapshot: Snapshot, opts: PlanOptions = {}): Plan {
    const prev = this.nodes;
    const grace = graceOf(snapshot);
    let cl = this.cluster;
    if (cl !== null && prev !== null && (prev === snapshot.nodes || sameNodes(prev, snapshot.nodes)) && cl.sync(snapshot, grace)) {
      // Same nodes: the cluster was brought up to date in place.
    } else {
      // Plan on the previous array when the content is the same, whose node order is cached.
      this.nodes = prev !== null && sameNodes(prev, snapshot.nodes) ? prev : snapshot.nodes;
      cl = this.cluster = new Cluster({ ...snapshot, nodes: this.nodes }, grace);
    }
    return planOn(cl, snapshot, opts);
  }
}

function sameNodes(a: readonly SnapshotNode[], b: readonly SnapshotNode[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x === y) continue;
    if (
      x.id !== y.id ||
      x.name !== y.name ||
      x.gpuType !== y.gpuType ||
      x.rack !== y.rack ||
      x.leafSwitch !== y.leafSwitch ||
      x.schedulable !== y.schedulable ||
      x.gpus.length !== y.gpus.length
    )
      return false;
    for (let k = 0; k < x.gpus.length; k++) if (x.gpus[k]!.index !== y.gpus[k]!.index || x.gpus[k]!.healthy !== y.gpus[k]!.healthy) return false;
  }
  return true;
}
