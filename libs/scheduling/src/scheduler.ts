/**
 * A scheduler that keeps state between passes, for a caller that runs one pass after another
 * (the live scheduler, the simulator). `plan(snapshot)` always returns exactly what the pure
 * `schedule(snapshot)` returns for that snapshot; the state only saves work:
 *  - node order (leaf switch, rack, id) and healthy-GPU lists: reused while the node set is
 *    unchanged (compared by content: ids, type, topology, state and GPU health), so a caller
 *    that builds a fresh node array every pass (as one reading from the database does) does
 *    not re-sort thousands of nodes.
 *
 * Usage: keep one instance per scheduler process and call `plan(snapshot)` instead of
 * `schedule(snapshot)` once per pass.
 */
import { schedule } from './policy';
import { Plan, Snapshot, SnapshotNode } from './types';

export class Scheduler {
  private nodes: readonly SnapshotNode[] | null = null;

  plan(snapshot: Snapshot): Plan {
    const prev = this.nodes;
    if (prev !== null && prev !== snapshot.nodes && sameNodes(prev, snapshot.nodes)) {
      // Same content: plan on the previous array, whose node order is cached (see cluster.ts).
      return schedule({ ...snapshot, nodes: prev });
    }
    this.nodes = snapshot.nodes;
    return schedule(snapshot);
  }
}

function sameNodes(a: readonly SnapshotNode[], b: readonly SnapshotNode[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const y = b[i];
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
    for (let k = 0; k < x.gpus.length; k++) if (x.gpus[k].index !== y.gpus[k].index || x.gpus[k].healthy !== y.gpus[k].healthy) return false;
  }
  return true;
}
