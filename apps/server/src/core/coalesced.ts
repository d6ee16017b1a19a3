/**
 * Runs `round` now, or once more right after the round in flight: a burst of triggers
 * coalesces into at most one extra round. The live scheduler's passes and the gateway's
 * reconcile both run this way.
 *
 * The stored promise is cleared only when it settles. Clearing it at the end of the loop
 * itself ran before the assignment when a round finished without awaiting (the gateway
 * with no agent connected), which left a finished promise stored and every later trigger
 * a no-op: dispatch stopped for good.
 */
export class Coalesced {
  private running: Promise<void> | null = null;
  private again = false;

  constructor(
    private readonly round: () => Promise<void>,
    private readonly opts: {
      /** Checked before another round (shutdown). */
      stopped?: () => boolean;
      /** Pause before the next round, given the last one's duration in ms (spacing under load). */
      pauseMs?: (spentMs: number) => number;
    } = {},
  ) {}

  trigger(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    // The loop starts on a later tick, after `running` is stored: a trigger from inside a
    // round (before its first await) then queues one more round instead of re-entering.
    const run = Promise.resolve()
      .then(() => this.loop())
      .finally(() => {
        if (this.running === run) this.running = null;
      });
    this.running = run;
  }

  /** Resolves when no round runs or is queued. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private async loop(): Promise<void> {
    const stopped = () => this.opts.stopped?.() ?? false;
    do {
      this.again = false;
      const t0 = performance.now();
      await this.round();
      const pause = this.opts.pauseMs?.(performance.now() - t0) ?? 0;
      if (this.again && !stopped() && pause > 0) await new Promise((r) => setTimeout(r, pause));
    } while (this.again && !stopped());
  }
}
