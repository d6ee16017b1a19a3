import { describe, expect, it } from 'vitest';
import { passPause, SUBMIT_PASS_SPACING_MS } from './pacing';

describe('the pause between passes asked for while one ran', () => {
  const shared = { sharesProcess: true, onlySubmits: false, express: true };
  it('is as long as the pass ran in a shared process, at most 1 s alone', () => {
    expect(passPause(3000, shared)).toBe(3000);
    expect(passPause(3000, { ...shared, sharesProcess: false })).toBe(1000);
    expect(passPause(40, { ...shared, sharesProcess: false })).toBe(40);
  });
  it('is at least the submit spacing when only submissions asked and express starts serve them', () => {
    expect(passPause(30, { ...shared, onlySubmits: true })).toBe(SUBMIT_PASS_SPACING_MS);
    expect(passPause(30, { ...shared, onlySubmits: true, sharesProcess: false })).toBe(SUBMIT_PASS_SPACING_MS);
    expect(passPause(900, { ...shared, onlySubmits: true, sharesProcess: false })).toBe(900);
    // Sharing a process with the api, such passes take at most a third of it.
    expect(passPause(180, { ...shared, onlySubmits: true })).toBe(360);
    expect(passPause(900, { ...shared, onlySubmits: true })).toBe(1800);
    // A job end or a node change, or no express state yet: no floor.
    expect(passPause(30, shared)).toBe(30);
    expect(passPause(30, { ...shared, onlySubmits: true, express: false })).toBe(30);
  });
});
