/** What a pending job shows while it waits: its reason, estimated start (ms) and queue position. */
export interface Annotation {
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
 * exact; a position beyond the first 100 and an estimate more than 10 minutes out are
 * rewritten when they drift by 10% (the reason itself says "about 12000 jobs ahead").
 */
export function annotationStale(old: Annotation | undefined, next: Annotation, now: number): boolean {
  if (!old || old.reason !== next.reason) return true;
  if (old.position !== next.position) {
    if (old.position === null || next.position === null || Math.min(old.position, next.position) <= EXACT_POSITIONS) return true;
    if (Math.abs(old.position - next.position) > POSITION_SLACK * next.position) return true;
  }
  if (old.eta !== next.eta) {
    if (old.eta === null || next.eta === null) return true;
    if (Math.abs(old.eta - next.eta) > Math.max(ETA_EXACT_MS, ETA_SLACK * (next.eta - now))) return true;
  }
  return false;
}
