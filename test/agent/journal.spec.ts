import { appendFileSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Journal } from '../../apps/agent/src/journal';

describe('Journal', () => {
  it('survives a reopen, skips a torn last line and prunes acknowledged entries', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'nuri-journal-')), 'journal.jsonl');
    const j = new Journal(path);
    j.load();
    const a = j.append({ kind: 'started', jobId: 'a', pid: 10 });
    j.append({ kind: 'exited', jobId: 'a', exitCode: 2, signal: null, cause: 'exit' });
    appendFileSync(path, '{"id":"torn","at":1,"ev');
    const j2 = new Journal(path);
    const loaded = j2.load();
    expect(loaded.map((e) => e.event.kind)).toEqual(['started', 'exited']);
    expect(j2.pendingExits()).toEqual(new Set(['a']));
    j2.append({ kind: 'started', jobId: 'b', pid: 11 });
    expect(new Journal(path).load().map((e) => e.event.jobId)).toEqual(['a', 'a', 'b']);
    j2.remove([a.id]);
    expect(readFileSync(path, 'utf8').trim().split('\n')).toHaveLength(2);
    expect(new Journal(path).load().map((e) => e.event.kind)).toEqual(['exited', 'started']);
  });
});
