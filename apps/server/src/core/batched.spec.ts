import { describe, expect, it } from 'vitest';
import { Batched } from './batched';

describe('Batched', () => {
  it('runs an item alone at once, and what arrives meanwhile together, up to max', async () => {
    const seen: string[][] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const b = new Batched<string, string>(
      async (items) => {
        seen.push(items);
        if (seen.length === 1) await gate;
        return items.map((i) => i.toUpperCase());
      },
      { max: 3, key: (i) => i },
    );
    const first = b.run('a');
    const rest = ['b', 'c', 'd', 'e'].map((i) => b.run(i));
    release();
    expect(await first).toBe('A');
    expect(await Promise.all(rest)).toEqual(['B', 'C', 'D', 'E']);
    expect(seen).toEqual([['a'], ['b', 'c', 'd'], ['e']]);
  });

  it('never puts two items with one key in a batch: the later waits for the next', async () => {
    const seen: string[][] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const b = new Batched<{ node: string; n: number }, number>(
      async (items) => {
        seen.push(items.map((i) => `${i.node}${i.n}`));
        if (seen.length === 1) await gate;
        return items.map((i) => i.n);
      },
      { max: 10, key: (i) => i.node },
    );
    const all = [b.run({ node: 'x', n: 0 }), b.run({ node: 'x', n: 1 }), b.run({ node: 'y', n: 2 }), b.run({ node: 'x', n: 3 })];
    release();
    expect(await Promise.all(all)).toEqual([0, 1, 2, 3]);
    expect(seen).toEqual([['x0'], ['x1', 'y2'], ['x3']]);
  });

  it('with a linger, sends an item arriving while nothing runs after it, with what came meanwhile', async () => {
    const seen: { items: number[]; at: number }[] = [];
    const t0 = performance.now();
    const b = new Batched<number, number>(
      async (items) => {
        seen.push({ items, at: performance.now() - t0 });
        return items.map((i) => i * 2);
      },
      { max: 10, key: String, lingerMs: 40 },
    );
    const first = [b.run(1), b.run(2)];
    await new Promise((r) => setTimeout(r, 10));
    const third = b.run(3);
    expect(await Promise.all([...first, third])).toEqual([2, 4, 6]);
    expect(seen.map((s) => s.items)).toEqual([[1, 2, 3]]);
    expect(seen[0]!.at).toBeGreaterThanOrEqual(39);
    // Alone again later: it lingers again, then goes by itself.
    expect(await b.run(4)).toBe(8);
    expect(seen.map((s) => s.items)).toEqual([[1, 2, 3], [4]]);
  });

  it('with a linger, under a steady stream begins a batch at most that often, unless a full one waits', async () => {
    const seen: number[][] = [];
    const b = new Batched<number, number>(
      async (items) => {
        seen.push(items);
        return items;
      },
      { max: 4, key: String, lingerMs: 30 },
    );
    // An item every 3 ms for about 150 ms: about five batches, not fifty.
    const all: Promise<number>[] = [];
    for (let i = 0; i < 50; i++) {
      all.push(b.run(i));
      await new Promise((r) => setTimeout(r, 3));
    }
    expect(await Promise.all(all)).toEqual([...Array(50).keys()]);
    expect(seen.flat()).toEqual([...Array(50).keys()]);
    // Full batches go at once: more than 50 / 4 batches were never needed, and none is over max.
    expect(seen.every((s) => s.length <= 4)).toBe(true);
    const notFull = seen.filter((s) => s.length < 4).length;
    expect(notFull).toBeLessThanOrEqual(8);
  });

  it('with a linger, sends a batch as soon as it is full, not when the linger ends', async () => {
    const seen: { items: number[]; at: number }[] = [];
    const t0 = performance.now();
    const b = new Batched<number, number>(
      async (items) => {
        seen.push({ items, at: performance.now() - t0 });
        return items;
      },
      { max: 3, key: String, lingerMs: 1000 },
    );
    // As a caller that lets three in at a time: the third fills the batch 20 ms after the first.
    const first = [b.run(1), b.run(2)];
    await new Promise((r) => setTimeout(r, 20));
    expect(await Promise.all([...first, b.run(3)])).toEqual([1, 2, 3]);
    expect(seen.map((s) => s.items)).toEqual([[1, 2, 3]]);
    expect(seen[0]!.at).toBeLessThan(500);
  });

  it('fails every item of a failed batch, and goes on with the next', async () => {
    let calls = 0;
    const b = new Batched<number, number>(
      async (items) => {
        calls++;
        if (items.includes(13)) throw new Error('unlucky');
        return items;
      },
      { max: 10, key: String },
    );
    const [a, c] = [b.run(13), b.run(1)];
    await expect(a).rejects.toThrow('unlucky');
    expect(await c).toBe(1);
    expect(calls).toBe(2);
  });
});
