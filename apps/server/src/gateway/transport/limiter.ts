/** Runs at most `max` tasks at once; the rest wait their turn, first come first served. */
export class Limiter {
  private active = 0;
  private readonly queue: (() => void)[] = [];

  constructor(private readonly max: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) await new Promise<void>((r) => this.queue.push(r));
    else this.active++;
    try {
      return await task();
    } finally {
      // Hand the slot to the next waiter directly (active stays counted), or free it.
      const next = this.queue.shift();
      if (next) next();
      else this.active--;
    }
  }

  /** Tasks running and waiting (tests, metrics). */
  get size(): { active: number; waiting: number } {
    return { active: this.active, waiting: this.queue.length };
  }
}
