import { describe, expect, it } from 'vitest';
import { Coalesced } from './coalesced';

describe('Coalesced', () => {
  it('keeps running rounds after one that finished without awaiting anything (the stalled-dispatch bug)', async () => {
    let rounds = 0;
    const c = new Coalesced(async () => {
      rounds++;
    });
    c.trigger();
    await c.idle();
    c.trigger();
    await c.idle();
    expect(rounds).toBe(2);
  });

  it('coalesces a burst of triggers during a round into one more round', async () => {
    let rounds = 0;
    let release!: () => void;
    const c = new Coalesced(async () => {
      rounds++;
      if (rounds === 1) await new Promise<void>((r) => (release = r));
    });
    c.trigger();
    for (let i = 0; i < 10; i++) c.trigger();
    await new Promise((r) => setImmediate(r)); // the first round is under way
    for (let i = 0; i < 10; i++) c.trigger();
    release();
    await c.idle();
    expect(rounds).toBe(2);
  });

  it('runs no further round once stopped', async () => {
    let rounds = 0;
    let stopped = false;
    const c = new Coalesced(
      async () => {
        rounds++;
        stopped = true;
        c.trigger();
      },
      { stopped: () => stopped },
    );
    c.trigger();
    await c.idle();
    expect(rounds).toBe(1);
  });
});
