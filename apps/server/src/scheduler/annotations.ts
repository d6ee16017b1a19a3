import type { PendingReasonCodeName } from '@nuri/contracts';
import { waitReasonHash } from '@nuri/db';

/** What a pending job shows while it waits: its reason, estimated start (ms) and queue position. */
export interface Annotation {
  code: PendingReasonCodeName;
  reason: string;
  eta: number | null;
  position: number | null;
}

/**
 * What is known of a job's stored annotation: the one this leader wrote, or one read back from
 * the database, whose sentence is known by its hash (`waitReasonHash`, stored with it) unless it
 * was written without one.
 */
export type StoredAnnotation = Annotation | (Omit<Annotation, 'reason'> & { reason: null; reasonHash: number });

/** Queue positions up to this are stored exactly; beyond it, within POSITION_SLACK of the truth. */
const EXACT_POSITIONS = 100;
const POSITION_SLACK = 0.1;
/** A stored estimate is rewritten when it moved by more than this, or by more than ETA_SLACK of the wait left. */
const ETA_EXACT_MS = 60_000;
const ETA_SLACK = 0.1;

export type StaleCause = 'new' | 'code' | 'reason' | 'position' | 'estimate';

/**
 * Why a pending job's stored annotation must be rewritten, or null (the slow-pass log counts
 * the causes). After every start all the
 * positions behind it move by one, and once estimates are calibrated every estimate moves with
 * the clock: rewriting them all took seconds a pass at 100,000 pending jobs. A reason is always
 * exact (its code and sentence); a position beyond the first 100 and an estimate more than 10
 * minutes out are rewritten when they drift by 10% (the reason itself says "about 12000 jobs
 * ahead"). So is a "behind higher-ranked jobs" sentence whose count moved (it names how many wait
 * ahead, and after each start tens of thousands of those counts move by one or two): it is
 * rewritten with its position, exactly within the first 100, else when the position drifts.
 */
export function staleBecause(old: StoredAnnotation | undefined, next: Annotation, now: number): StaleCause | null {
  return staleFields(old, next.code, next.reason, next.eta, next.position, now);
}

/** `staleBecause` on the new annotation's fields: a pass asks for each of 100,000 jobs, and most answers are null (no object made for them). */
export function staleFields(old: StoredAnnotation | undefined, code: PendingReasonCodeName, reason: string, eta: number | null, position: number | null, now: number): StaleCause | null {
  if (!old) return 'new';
  if (old.code !== code) return 'code';
  if (!sameReason(old, reason) && (code !== 'behind_higher_ranked' || positionStale(old.position, position))) return 'reason';
  if (positionStale(old.position, position)) return 'position';
  if (etaError(old.eta, eta, now) > 1) return 'estimate';
  return null;
}

/**
 * Whether a rewrite is only the drift of a wait that still says the same: a position or an
 * estimate past its slack, or a "behind higher-ranked jobs" sentence whose count moved with its
 * position. A pass writes a bounded number of these (see NURI_DRIFTED_WAITS_PER_PASS); a new
 * wait, a new code or a new reason is never held back by that bound.
 */
export function isDrift(cause: StaleCause, code: PendingReasonCodeName): boolean {
  return cause === 'position' || cause === 'estimate' || (cause === 'reason' && code === 'behind_higher_ranked');
}

/**
 * How wrong a drifted stored wait is, as a multiple of what its slack allows (over 1 once it is
 * stale): its position's error over 10 % of the true position, its estimate's over the larger of
 * 1 minute and 10 % of the wait left; Infinity where it must be exact (a position within the first
 * 100) or a value came or went. When more drifted than a pass rewrites, the most wrong go first:
 * with a burst going on, taking the front of the queue first would rewrite the same few thousand
 * every pass and leave the rest of the queue as wrong as the burst is long.
 */
export function driftScore(old: StoredAnnotation, eta: number | null, position: number | null, now: number): number {
  return Math.max(positionError(old.position, position), etaError(old.eta, eta, now));
}

function sameReason(old: StoredAnnotation, reason: string): boolean {
  return old.reason === null ? old.reasonHash === hashOf(reason) : old.reason === reason;
}

/** The hashes of sentences compared lately: a new leader's first pass compares 100,000 jobs', most of them one of a few sentences (the same strings). */
const hashes = new Map<string, number>();
const HASHES_KEPT = 50_000;

function hashOf(reason: string): number {
  let h = hashes.get(reason);
  if (h === undefined) {
    if (hashes.size >= HASHES_KEPT) hashes.clear();
    hashes.set(reason, (h = waitReasonHash(reason)));
  }
  return h;
}

function positionStale(old: number | null, next: number | null): boolean {
  return positionError(old, next) > 1;
}

/**
 * A stored value's error over what its slack allows (stale above 1), the one rule for both
 * whether it is rewritten and, among drifted ones, which first: 0 when it is the same; Infinity
 * when it must be exact (a position within the first 100) or the value came or went.
 */
function positionError(old: number | null, next: number | null): number {
  if (old === next) return 0;
  if (old === null || next === null || Math.min(old, next) <= EXACT_POSITIONS) return Infinity;
  return Math.abs(old - next) / (POSITION_SLACK * next);
}

/** The same for an estimate: it may move by a minute, or by 10 % of the wait left. */
function etaError(old: number | null, next: number | null, now: number): number {
  if (old === next) return 0;
  if (old === null || next === null) return Infinity;
  return Math.abs(old - next) / Math.max(ETA_EXACT_MS, ETA_SLACK * (next - now));
}

/**
 * A job behind higher-ranked ones shows "Free GPUs are held for job …" while GPUs are free
 * but promised to a larger job, and "behind higher-ranked jobs" once they are taken: as
 * running jobs end and GPUs fill again, tens of thousands of jobs flip between the two from
 * one pass to the next and back (17,000 rows rewritten every other pass at 100,000 pending
 * jobs). Such a flip is written once the new code held for two passes in a row; any other
 * change at once.
 */
const FLICKERING: ReadonlySet<PendingReasonCodeName> = new Set(['behind_higher_ranked', 'reservation_for_larger_job']);

export class FlickerDamper {
  /** Jobs whose code flipped at the last pass and was not written yet: the code they flipped to. */
  private readonly seen = new Map<string, PendingReasonCodeName>();

  /** Whether to write `next` over `old` now (false: wait and see whether it holds). */
  settled(id: string, old: StoredAnnotation | undefined, next: Pick<Annotation, 'code'>): boolean {
    if (!old || old.code === next.code || !FLICKERING.has(old.code) || !FLICKERING.has(next.code)) {
      this.seen.delete(id);
      return true;
    }
    if (this.seen.get(id) === next.code) {
      this.seen.delete(id);
      return true;
    }
    this.seen.set(id, next.code);
    return false;
  }

  forget(id: string): void {
    // Asked for every pending job each pass; nearly always none is waiting to settle.
    if (this.seen.size) this.seen.delete(id);
  }

  /** Keeps only the jobs `keep` says are still waiting. */
  retain(keep: (id: string) => boolean): void {
    for (const id of this.seen.keys()) if (!keep(id)) this.seen.delete(id);
  }

  clear(): void {
    this.seen.clear();
  }
}
