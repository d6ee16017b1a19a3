/**
 * npm run bench:api — starts the product as a user would (its own process, demo center,
 * real PostgreSQL) and measures: time to ready, submit-to-running latency of 1-GPU jobs on
 * the idle demo, and jobs accepted per second by POST /v1/jobs with 16 concurrent clients.
 * Loopback only; every loop is bounded in count and time.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Client } from 'pg';
import { percentile, scratchDatabase } from './support';

const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 16);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const LATENCY_JOBS = Number(process.env.BENCH_LATENCY_JOBS ?? 100);
/** Pending jobs seeded by SQL before the loaded measures (0: skip them). */
const PENDING = Number(process.env.BENCH_PENDING ?? 100_000);
const READS = Number(process.env.BENCH_READS ?? 50);
const PORT = 18000 + (process.pid % 1000);


async function main() {
  const scratch = await scratchDatabase(`nuri_bench_${process.pid}`);
  const work = mkdtempSync(join(tmpdir(), 'nuri-bench-'));
  let child: ChildProcess | undefined;
  try {
    const t0 = Date.now();
    // BENCH_NODE_ARGS: flags for the server's node (e.g. --cpu-prof to profile it); BENCH_SERVER:
    // another build's main.js (to compare before and after in one sitting).
    const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
    child = spawn(process.execPath, [...nodeArgs, process.env.BENCH_SERVER ?? resolve(__dirname, '../apps/server/src/main.js')], {
      env: {
        ...process.env,
        PORT: String(PORT),
        HOST: '127.0.0.1',
        DATABASE_URL: scratch.url,
        NURI_DEMO: '1',
        NURI_AGENT_WORK_DIR: work,
        NURI_LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    const token = await new Promise<string>((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`server not ready in 60 s:\n${out}`)), 60_000);
      child!.stdout!.on('data', (d) => {
        out += d;
        const m = /Researcher token \([^)]*\): (\S+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          ok(m[1]!);
        }
      });
      child!.once('exit', (c) => fail(new Error(`server exited with ${c}:\n${out}`)));
    });
    const readyMs = Date.now() - t0;
    const reported = /ready in (\d+) ms/.exec(out)?.[1];
    const base = `http://127.0.0.1:${PORT}`;
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const submit = async (body: object) => {
      const r = await fetch(`${base}/v1/jobs`, { method: 'POST', headers, body: JSON.stringify(body) });
      if (r.status !== 201) throw new Error(`submit: ${r.status} ${await r.text()}`);
      return (await r.json()) as { id: string };
    };
    const job = async (id: string) => (await (await fetch(`${base}/v1/jobs/${id}`, { headers })).json()) as any;
    // Let every simulated agent connect before measuring.
    for (let i = 0; i < 100; i++) {
      const nodes = (await (await fetch(`${base}/v1/nodes`, { headers })).json()) as any[];
      if (nodes.length && nodes.every((n) => n.state === 'up')) break;
      await new Promise((r) => setTimeout(r, 100));
    }

    // Submit-to-running on the idle demo: one job at a time, each waits for its end.
    const server: number[] = [];
    const observed: number[] = [];
    for (let i = 0; i < LATENCY_JOBS; i++) {
      const t = performance.now();
      const { id } = await submit({ name: `lat-${i}`, gpus: 1, gpuType: 'h100', timeLimitSeconds: 60, command: ['true'] });
      let j = await job(id);
      while (j.state === 'pending') j = await job(id);
      observed.push(performance.now() - t);
      const running = j.transitions.find((x: any) => x.to === 'running');
      server.push(new Date(running.at).getTime() - new Date(j.submittedAt).getTime());
      while (j.state === 'running') {
        await new Promise((r) => setTimeout(r, 5));
        j = await job(id);
      }
    }

    // Throughput: 16 clients submit as fast as they can for SECONDS. Jobs ask for more GPUs
    // than the tenant may use at once, so they queue and the measure is acceptance alone.
    // Load-independent figures beside the rate (the machine is shared): the server's CPU time and
    // the database's transactions per accepted job (the scheduler's included).
    const cpuMs = () => {
      const f = readFileSync(`/proc/${child!.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
    };
    const stats = new Client({ connectionString: scratch.url });
    stats.on('error', () => undefined);
    await stats.connect();
    const xacts = async () =>
      Number((await stats.query('select xact_commit + xact_rollback as n from pg_stat_database where datname = current_database()')).rows[0].n);
    const throughput = async () => {
      const cpu0 = cpuMs();
      await stats.query('select pg_stat_clear_snapshot()');
      const x0 = await xacts();
      let accepted = 0;
      const lat: number[] = [];
      const until = Date.now() + SECONDS * 1000;
      const started = performance.now();
      await Promise.all(
        Array.from({ length: CLIENTS }, async (_, c) => {
          for (let i = 0; Date.now() < until && i < 1_000_000; i++) {
            const t = performance.now();
            await submit({ name: `load-${c}-${i}`, gpus: 8, gpuType: 'h800', timeLimitSeconds: 3600, command: ['sleep', '3600'] });
            lat.push(performance.now() - t);
            accepted++;
          }
        }),
      );
      const elapsed = (performance.now() - started) / 1000;
      const cpu = (cpuMs() - cpu0) / accepted;
      // The statistics collector lags: let it catch up before reading the count.
      await new Promise((r) => setTimeout(r, 1000));
      await stats.query('select pg_stat_clear_snapshot()');
      const tx = ((await xacts()) - x0) / accepted;
      return (
        `${(accepted / elapsed).toFixed(0)} jobs/s accepted in ${elapsed.toFixed(1)} s; latency p50 ${percentile(lat, 50).toFixed(1)} ms, p99 ${percentile(lat, 99).toFixed(1)} ms\n` +
        `  per accepted job: server CPU ${cpu.toFixed(2)} ms, ${tx.toFixed(2)} database transactions`
      );
    };
    // Read latencies: the first page of pending jobs, a page deeper by cursor, one job's detail.
    const reads = async () => {
      const timed = async (path: string) => {
        const t = performance.now();
        const r = await fetch(`${base}${path}`, { headers });
        if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${await r.text()}`);
        const body = (await r.json()) as any;
        return { ms: performance.now() - t, body };
      };
      const first: number[] = [];
      const cursor: number[] = [];
      const detail: number[] = [];
      let page = (await timed('/v1/jobs?state=pending&limit=100')).body;
      // A cursor some pages deep: where a user paging through the queue would be.
      for (let i = 0; i < 5 && page.nextCursor; i++) page = (await timed(`/v1/jobs?state=pending&limit=100&cursor=${page.nextCursor}`)).body;
      const deep = page.nextCursor as string | null;
      const id = page.items[0]?.id as string;
      for (let i = 0; i < READS; i++) {
        first.push((await timed('/v1/jobs?state=pending&limit=100')).ms);
        if (deep) cursor.push((await timed(`/v1/jobs?state=pending&limit=100&cursor=${deep}`)).ms);
        detail.push((await timed(`/v1/jobs/${id}`)).ms);
      }
      const f = (xs: number[]) => `p50 ${percentile(xs, 50).toFixed(1)} ms, p99 ${percentile(xs, 99).toFixed(1)} ms`;
      return [
        `  GET /v1/jobs?state=pending&limit=100:  ${f(first)}`,
        `  the same, a cursor 6 pages deep:       ${deep ? f(cursor) : 'no 7th page'}`,
        `  GET /v1/jobs/:id (pending):            ${f(detail)}`,
      ].join('\n');
    };
    const idleThroughput = await throughput();
    const idleReads = await reads();
    console.log(`start to ready:            ${readyMs} ms (server reports ${reported} ms)`);
    console.log(`submit-to-running, 1 GPU, idle demo, ${LATENCY_JOBS} jobs:`);
    console.log(`  committed by scheduler:  p50 ${percentile(server, 50).toFixed(0)} ms, p99 ${percentile(server, 99).toFixed(0)} ms`);
    console.log(`  observed by the client:  p50 ${percentile(observed, 50).toFixed(1)} ms, p99 ${percentile(observed, 99).toFixed(1)} ms`);
    console.log(`POST /v1/jobs, ${CLIENTS} clients, real PostgreSQL, idle queue:`);
    console.log(`  ${idleThroughput}`);
    console.log(`reads, ${READS} each, after that run:`);
    console.log(idleReads);
    if (PENDING > 0) {
      const t = performance.now();
      await seedPending(scratch.url, PENDING);
      console.log(`seeded ${PENDING} pending jobs by SQL in ${((performance.now() - t) / 1000).toFixed(1)} s`);
      console.log(`POST /v1/jobs, ${CLIENTS} clients, against ${PENDING} pending jobs:`);
      console.log(`  ${await throughput()}`);
      console.log(`reads, ${READS} each, against ${PENDING} pending jobs:`);
      console.log(await reads());
    }
    await stats.end();
  } finally {
    child?.kill('SIGTERM');
    await new Promise((r) => (child && child.exitCode === null ? child.once('exit', r) : r(null)));
    await scratch.drop();
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * `n` pending jobs of every demo tenant's users, of mixed sizes and types, submitted over the
 * last day, each with its first transition, as the API would have written them.
 */
async function seedPending(url: string, n: number): Promise<void> {
  const db = new Client({ connectionString: url });
  await db.connect();
  try {
    await db.query(
      `with u as (select id, tenant_id, row_number() over (order by id) - 1 as k, count(*) over () as c from users where tenant_id is not null),
       j as (
         insert into jobs (tenant_id, user_id, name, state, gpus, gpu_type, priority, time_limit_seconds, command, env, requeue, submitted_at, queued_at)
         select u.tenant_id, u.id, 'seed-' || g, 'pending', (array[1, 2, 4, 8, 16])[1 + g % 5], (array['h100', 'h800', 'any'])[1 + g % 3],
                (array['low', 'normal', 'normal', 'high'])[1 + g % 4], 3600, '["sleep","3600"]', '{}', true, t, t
         from generate_series(1, $1::int) g
         cross join lateral (select now() - interval '1 day' + (g * interval '1 day') / $1::int as t) s
         join u on u.k = g % u.c
         returning id, submitted_at
       )
       insert into job_transitions (job_id, at, from_state, to_state, reason) select id, submitted_at, null, 'pending', 'submitted' from j`,
      [n],
    );
    await db.query('analyze');
  } finally {
    await db.end();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
