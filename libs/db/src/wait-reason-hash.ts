/**
 * The hash stored with a wait's sentence (job_waits.reason_hash): a leader reading the queue back
 * compares it instead of the sentence. 53 bits, so it is exact in a double (read as float8) and
 * two different sentences of one job agree by chance about once in 9·10^15 comparisons; even then
 * the job's code, position and estimate must also be unchanged for a stale sentence to stay.
 * Two 32-bit multiplicative lanes over the UTF-16 code units, each finished with the other's bits.
 * Never change it without a migration that clears the stored hashes (rows with none are read in full).
 */
export function waitReasonHash(s: string): number {
  let a = 0x811c9dc5;
  let b = 0x9e3779b9;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
  }
  a = Math.imul(a ^ (a >>> 15), 0x2c1b3c6d) ^ Math.imul(b ^ (b >>> 13), 0x297a2d39);
  b = Math.imul(b ^ (b >>> 16), 0x85ebca6b) ^ Math.imul(a ^ (a >>> 16), 0xc2b2ae35);
  // High 21 bits from one lane, low 32 from the other: below 2^53.
  return (b >>> 11) * 0x100000000 + (a >>> 0);
}
