import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../../apps/server/src/bootstrap';
import type { TestDatabase } from '../../libs/db/src/testing';
import { startCenter, type TestCenter } from '../support/center';
import { apiClient, until } from '../support/http';

const WAIT_MS = 60_000;

/**
 * Job arrays and batch scripts in the live system: a scheduler and an agent running real
 * processes. An array is one job per index; `%N` caps how many of it run at once.
 */
describe('job arrays and batch scripts', () => {
  let db: TestDatabase;
  let server: RunningServer;
  let c: TestCenter;
  let token: string;

  const api = apiClient(() => server.url);
  const base = { name: 'arr', gpus: 1, gpuType: 'h100', timeLimitSeconds: 600 };
  const submit = async (over: Record<string, unknown>) => {
    const r = await api(token, 'POST', '/v1/jobs', { ...base, command: ['true'], ...over });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    return r.body;
  };
  /** The tasks of an array, by index, as the tenant's listing shows them. */
  const tasksOf = async (arrayId: string): Promise<any[]> =>
    ((await api(token, 'GET', '/v1/jobs?limit=500')).body.items as any[]).filter((j) => j.array?.id === arrayId).sort((a, b) => a.array.taskId - b.array.taskId);
  const jobCount = async () => Number((await sql<{ n: string }>`select count(*) as n from jobs`.execute(db.handle.db)).rows[0]!.n);

  beforeAll(async () => {
    c = await startCenter({ name: 'arrays', vars: { NURI_SCHEDULER_TICK_MS: '300' }, tenants: [{ name: 'naver', user: 'alice', guaranteed: 8, limit: 8 }], nodes: ['n1'] });
    ({ db, server } = c);
    token = c.tokens.alice!;
  });
  afterAll(async () => {
    await c?.stop();
  });

  it('0-15:4 submits one job per index, the first task answering for the array', async () => {
    const first = await submit({ name: 'stepped', array: '0-15:4', env: { SEED: '7' } });
    expect(first.array).toEqual({ id: first.id, taskId: 0, size: 4, maxRunning: null });
    const tasks = await tasksOf(first.id);
    expect(tasks.map((t) => t.array)).toEqual([0, 4, 8, 12].map((taskId) => ({ id: first.id, taskId, size: 4, maxRunning: null })));
    expect(new Set(tasks.map((t) => t.id)).size).toBe(4);
    for (const t of tasks) {
      expect(t).toMatchObject({ name: 'stepped', gpus: 1, command: ['true'], env: { SEED: '7' }, submittedAt: first.submittedAt });
      expect(t.transitions[0]).toMatchObject({ from: null, to: 'pending', reason: 'submitted' });
    }
    // A plain job is no array.
    expect((await submit({ name: 'plain' })).array).toBeNull();
  });

  it('%2 never lets more than 2 of the array run at once, lowest indices first', async () => {
    const first = await submit({ name: 'capped', command: ['sleep', '1'], array: '0-5%2' });
    expect(first.array).toEqual({ id: first.id, taskId: 0, size: 6, maxRunning: 2 });
    let most = 0;
    let sawLimitReason = false;
    const done = await until(
      'every task of the capped array ended',
      async () => {
        const tasks = await tasksOf(first.id);
        const running = tasks.filter((t) => t.state === 'running').length;
        most = Math.max(most, running);
        expect(running).toBeLessThanOrEqual(2);
        for (const t of tasks)
          if (t.state === 'pending' && t.reason === 'array limit: at most 2 of its tasks run at once') {
            sawLimitReason = true;
            expect(t.estimatedStartAt).toBeNull();
          }
        return tasks.every((t) => t.state === 'completed') && tasks;
      },
      WAIT_MS,
      50,
    );
    // The GPUs were there for all six: the cap, not capacity, held them back.
    expect(most).toBe(2);
    expect(sawLimitReason).toBe(true);
    // Lower indices started no later than higher ones.
    const starts = done.map((t: any) => t.startedAt as string);
    expect([...starts].sort()).toEqual(starts);
  });

  it('a batch script is stored as a script, with `command` as its arguments', async () => {
    const script = '#!/bin/sh\necho "$@"\n';
    const job = await submit({ name: 'batch', script, command: ['--epochs', '3'] });
    expect(job.script).toBe(true);
    expect(job.command).toEqual(['--epochs', '3']);
    const stored = await sql<{ script: string | null }>`select script from jobs where id = ${job.id}::uuid`.execute(db.handle.db);
    expect(stored.rows[0]!.script).toBe(script);
    // Without arguments too; and an array of scripts.
    const bare = await submit({ name: 'batch-bare', script, command: undefined, array: '1,3' });
    expect(bare).toMatchObject({ script: true, command: [], array: { taskId: 1, size: 2 } });
    expect((await tasksOf(bare.id)).map((t) => [t.array.taskId, t.script])).toEqual([[1, true], [3, true]]);
    expect((await submit({ name: 'argv' })).script).toBe(false);
  });

  it('refuses a submission with neither command nor script, or a bad array, naming the field, and changes nothing', async () => {
    const before = await jobCount();
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ ...base }, 'command', /command to run/],
      [{ ...base, command: [] }, 'command', /command to run/],
      [{ ...base, command: ['x'], script: 'echo hi' }, 'script', /#!/],
      [{ ...base, command: ['x'], array: '5-1' }, 'array', /ends before it starts/],
      [{ ...base, command: ['x'], array: '0-3%0' }, 'array', /%N/],
      [{ ...base, command: ['x'], array: '0-20000' }, 'array', /at most 10000/],
      [{ ...base, command: ['x'], array: 'a-b' }, 'array', /.+/],
    ];
    for (const [body, field, rule] of cases) {
      const r = await api(token, 'POST', '/v1/jobs', body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.issues.map((i: any) => i.field), JSON.stringify(body)).toEqual([field]);
      expect(r.body.issues[0].rule).toMatch(rule);
    }
    expect(await jobCount()).toBe(before);
  });
});
