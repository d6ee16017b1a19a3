/**
 * Group work: while one batch runs, items that arrive wait and then go together, up to `max`
 * at a time; alone, an item goes at once. With `lingerMs`, a batch begins at most that long
 * after the previous one began (or after its item came, if none ran), unless a full one waits
 * (also one that fills while it lingers).
 * Items with the same key never share a batch (the later one waits for the next), so a batch
 * may update one row per key. A batch that fails fails each of its items with that error. The
 * gateway's hellos run this way: 4,000 agents reconnecting after a restart are a few dozen sets
 * of statements, not 4,000.
 */
export class Batched<I, O> {
  private readonly queue: { item: I; done: (r: { ok: O } | { err: unknown }) => void }[] = [];
  private running = false;
  /** Ends the linger at once (a full batch waits). */
  private stopLingering: (() => void) | undefined;

  constructor(
    private readonly batch: (items: I[]) => Promise<O[]>,
    /**
     * `lingerMs`: the least time between the beginnings of two batches that are not full. A
     * short statement is over before the next item of a storm arrives, so without it such a
     * storm goes about one item a batch.
     */
    private readonly opts: { max: number; key: (item: I) => string; lingerMs?: number },
  ) {}

  run(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, done: (r) => ('ok' in r ? resolve(r.ok) : reject(r.err)) });
      if (!this.running) void this.drain();
      else if (this.queue.length >= this.opts.max) this.stopLingering?.();
    });
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      // With a linger, batches begin at most that often unless a full one waits, the first after
      // its first item came: under a steady stream each batch would otherwise take the one or two
      // items that came during the last.
      let began = Date.now();
      while (this.queue.length) {
        const rest = (this.opts.lingerMs ?? 0) - (Date.now() - began);
        // A batch that fills meanwhile goes at once: a caller that lets only so many items in at
        // a time (the gateway's hellos) would otherwise wait out every linger with a full one.
        if (rest > 0 && this.queue.length < this.opts.max)
          await new Promise<void>((r) => {
            const t = setTimeout(r, rest);
            this.stopLingering = () => {
              clearTimeout(t);
              r();
            };
          });
        this.stopLingering = undefined;
        const keys = new Set<string>();
        const taken: typeof this.queue = [];
        for (let i = 0; i < this.queue.length && taken.length < this.opts.max; ) {
          const k = this.opts.key(this.queue[i]!.item);
          if (keys.has(k)) {
            i++;
            continue;
          }
          keys.add(k);
          taken.push(...this.queue.splice(i, 1));
        }
        began = Date.now();
        try {
          const out = await this.batch(taken.map((t) => t.item));
          taken.forEach((t, i) => t.done({ ok: out[i]! }));
        } catch (err) {
          for (const t of taken) t.done({ err });
        }
      }
    } finally {
      this.running = false;
    }
  }
}
