/**
 * Group work: while one batch runs, items that arrive wait and then go together, up to `max`
 * at a time; alone, an item goes at once. Items with the same key never share a batch (the
 * later one waits for the next), so a batch may update one row per key. A batch that fails
 * fails each of its items with that error. The gateway's hellos run this way: 4,000 agents
 * reconnecting after a restart are a few dozen sets of statements, not 4,000.
 */
export class Batched<I, O> {
  private readonly queue: { item: I; done: (r: { ok: O } | { err: unknown }) => void }[] = [];
  private running = false;

  constructor(
    private readonly batch: (items: I[]) => Promise<O[]>,
    private readonly opts: { max: number; key: (item: I) => string },
  ) {}

  run(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, done: (r) => ('ok' in r ? resolve(r.ok) : reject(r.err)) });
      if (!this.running) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length) {
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
