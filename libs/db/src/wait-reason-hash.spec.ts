import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { waitReasonHash } from './wait-reason-hash';

describe('waitReasonHash', () => {
  it('is a whole number below 2^53 (exact as the double it is read back as), the same for the same sentence', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (s) => {
        const h = waitReasonHash(s);
        expect(Number.isSafeInteger(h) && h >= 0).toBe(true);
        expect(waitReasonHash(`${s}`)).toBe(h);
      }),
    );
  });

  it("tells apart the sentences a queue holds: 200,000 that differ in a count, a job id or a tenant's name, each its own hash", () => {
    const sentences: string[] = [];
    for (let i = 0; i < 50_000; i++) {
      sentences.push(`Tenant kakao is at its quota limit (${i} of 65536 H100 GPUs in use or claimed); this job needs ${1 + (i % 8)} H100 GPUs and starts when the tenant's running jobs free enough.`);
      sentences.push(`Waiting for 8 GPUs: about ${i} higher-ranked jobs wait for the same GPUs.`);
      sentences.push(`Free GPUs are held for job ${i.toString(16).padStart(8, '0')}-0000-4000-8000-000000000000, which starts first.`);
      sentences.push(`Tenant 연구소-${i} 대기 중`);
    }
    // (32 bits would not: about five pairs of 200,000 sentences would share one.)
    const distinct = [...new Set(sentences)];
    expect(distinct.length).toBe(200_000);
    expect(new Set(distinct.map(waitReasonHash)).size).toBe(distinct.length);
  });

  it('moves both halves of the hash when one character changes', () => {
    const a = waitReasonHash('behind 3 jobs');
    const b = waitReasonHash('behind 4 jobs');
    expect(Math.floor(a / 2 ** 32)).not.toBe(Math.floor(b / 2 ** 32));
    expect(a % 2 ** 32).not.toBe(b % 2 ** 32);
  });
});
