/** The least time between passes that only submissions asked for (see `passes`). */
export const SUBMIT_PASS_SPACING_MS = 250;

/**
 * The pause before a pass asked for while the last one ran, which took `spent` ms: as long as
 * it ran in a process shared with the api or a gateway, else at most 1 s; and at least
 * SUBMIT_PASS_SPACING_MS when only submissions asked and express starts serve newcomers.
 */
export function passPause(spent: number, o: { sharesProcess: boolean; onlySubmits: boolean; express: boolean }): number {
  const pause = o.sharesProcess ? spent : Math.min(1000, spent);
  return o.onlySubmits && o.express ? Math.max(pause, SUBMIT_PASS_SPACING_MS) : pause;
}
