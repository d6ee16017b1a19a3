import type { PendingReasonCodeName } from '@nuri/contracts';

/** What a pending job shows while it waits: its reason, estimated start (ms) and queue position. */
export interface Annotation {
  code: PendingReasonCodeName;
  reason: string;
  eta: number | null;
  position: number | null;
}

/** Queue positions up to this are stored exactly; beyond it, within POSITION_SLACK of the truth. */
const EXACT_POSITIONS = 100;
const POSITION_SLACK = 0.1;
/** A stored estimate is rewritten when it moved by more than this, or by more than ETA_SLACK of the wait left. */
const ETA_EXACT_MS = 60_000;
const ETA_SLACK = 0.1;

/**
 * Whether a pending job's stored annotation must be rewritten. After every start all the
 * positions behind it move by one, and once estimates are calibrated every estimate moves with
 * the clock: rewriting them all took seconds a pass at 100,000 pending jobs. A reason is always
 * exact (its code and sentence); a position beyond the first 100 and an estimate more than 10
 * minutes out are rewritten when they drift by 10% (the reason itself says "about 12000 jobs
 * ahead"). So is a "behind higher-ranked jobs" sentence whose count moved (it names how many wait
 * ahead, and after each start tens of thousands of those counts move by one or two): it is
 * rewritten with its position, exactly within the first 100, else when the position drifts.
 */
export function annotationStale(old: Annotation | undefined, next: Annotation, now: number): boolean {
  if (!old || old.code !== next.code) return true;
  if (old.reason !== next.reason && (next.code !== 'behind_higher_ranked' || positionStale(old.position, next.position))) return true;
  if (positionStale(old.position, next.position)) return true;
  if (old.eta !== next.eta) {
    if (old.eta === null || next.eta === null) return true;
    if (Math.abs(old.eta - next.eta) > Math.max(ETA_EXACT_MS, ETA_SLACK * (next.eta - now))) return true;
  }
  return false;
}

function positionStale(old: number | null, next: number | null): boolean {
  if (old === next) return false;
  if (old === null || next === null || Math.min(old, next) <= EXACT_POSITIONS) return true;
  return Math.abs(old - next) > POSITION_SLACK * next;
}
