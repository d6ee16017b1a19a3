/** The least time between passes that only submissions asked for (see `passes`). */
export const SUBMIT_PASS_SPACING_MS = 250;

/**
 * The pause before a pass asked for while the last one ran, which took `spent` ms: as long as
 * it ran in a process shared with the api or a gateway, else at most 1 s; and at least
 * SUBMIT_PASS_SPACING_MS when only submissions asked and express starts serve newcomers. Then,
 * sharing a process, twice as long as it ran: the newcomers such passes are for only wait for
 * their reason and position (express starts started those that could start), and under a
 * stream of submissions into a queue of 100,000 (passes of about 180 ms) the scheduler took
 * over 40% of the process the api answers them in.
 */
export function passPause(spent: number, o: { sharesProcess: boolean; onlySubmits: boolean; express: boolean }): number {
  const pause = o.sharesProcess ? spent : Math.min(1000, spent);
  if (!o.onlySubmits || !o.express) return pause;
  return Math.max(o.sharesProcess ? 2 * spent : pause, SUBMIT_PASS_SPACING_MS);
}
