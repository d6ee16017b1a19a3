/**
 * GET /v1/usage over a large ledger (issue 15): a scratch PostgreSQL database seeded by SQL
 * with BENCH_LEDGER_ROWS ledger rows (default 1,000,000 attempts: 20 tenants, 1,000 users,
 * both GPU types, over 180 days, 2,000 still running), default and contract prices with a
 * change inside the range, the daily rollup rebuilt from the ledger (the repository's own
 * day split); then the api role serves `GET /v1/usage?groupBy=tenant,month` (and a few other
 * groupings) through HTTP, each timed (BENCH_RUNS times for the first).
 *   npm run bench:usage                    (seed, measure, drop: with a million rows, over a minute)
 *   BENCH_KEEP=1 npm run bench:usage       (seed only, keep the database), then
 *   BENCH_DB=<name> npm run bench:usage    (measure on it)
 */
import { parseServerConfig } from '@nuri/config';
import { LedgerRepository, migrateToLatest, openDatabase } from '@nuri/db';
import { sql } from 'kysely';
import { startServer } from '../apps/server/src/bootstrap';
import { cpus, loadavg } from 'node:os';
import { testServerUrl } from '../libs/db/src/testing';
import { percentile, scratchDatabase } from './support';

const ROWS = Number(process.env.BENCH_LEDGER_ROWS ?? 1_000_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 15);
const ATTEMPTS_PER_JOB = 5;
const TOKEN = 'bench-usage-operator-token-0123456789abcdef';

async function main(): Promise<void> {
  // BENCH_DB: a database seeded by an earlier run with BENCH_KEEP=1 (seeding a million rows takes most of a minute).
  const reuse = process.env.BENCH_DB;
  const scratch = reuse ? { url: Object.assign(new URL(testServerUrl()), { pathname: `/${reuse}` }).toString(), drop: async () => undefined } : await scratchDatabase(`nuri_bench_usage_${process.pid}`);
  try {
    if (!reuse) await seed(scratch.url);
    if (process.env.BENCH_KEEP && !reuse) {
      const name = new URL(scratch.url).pathname.slice(1);
      console.log(`kept ${name} (seeded only); measure: BENCH_DB=${name} npm run bench:usage; drop: psql -c 'drop database ${name}'`);
      return;
    }
    await measure(scratch.url);
  } finally {
    if (!process.env.BENCH_KEEP) await scratch.drop();
  }
}

async function seed(url: string): Promise<void> {
  {
    const h = await openDatabase({ url, poolSize: 1 });
    await migrateToLatest(h.db);
    const t0 = Date.now();
    const jobs = Math.ceil(ROWS / ATTEMPTS_PER_JOB);
    await sql`
      insert into tenants (name, display_name) select 'tenant' || i, 'Tenant ' || i from generate_series(0, 19) i;
      insert into users (name, tenant_id, role) select t.name || '-user' || u, t.id, 'researcher' from tenants t, generate_series(0, 49) u;
    `.execute(h.db);
    // Jobs (finished, as the ledger's parents): one per ATTEMPTS_PER_JOB ledger rows.
    await sql`
      insert into jobs (tenant_id, user_id, name, state, gpus, gpu_type, gpu_model, priority, time_limit_seconds, command, env, submitted_at, queued_at, attempts)
      select u.tenant_id, u.id, 'job-' || i, 'completed', (array[1, 2, 4, 8, 8, 16, 32])[1 + i % 7],
             (array['h100', 'h800'])[1 + i % 2], (array['h100', 'h800'])[1 + i % 2], 'normal', 86400, '[]', '{}', now(), now(), ${ATTEMPTS_PER_JOB}
      from generate_series(0, ${jobs - 1}) i
      join (select id, tenant_id, row_number() over (order by id) - 1 as k from users) u on u.k = (i * 7919) % 1000
    `.execute(h.db);
    const jobsAt = Date.now();
    // Seeding only: no per-row foreign key triggers (every row's parents exist by construction).
    await sql`set session_replication_role = replica`.execute(h.db);
    // Attempts spread over the last 180 days, 10 min to 24 h each; the newest 2,000 still running.
    await sql`
      insert into usage_ledger (job_id, attempt, tenant_id, user_id, gpu_type, gpus, started_at, ended_at, end_state, sampled_gpu_seconds, busy_gpu_seconds, idle_gpu_seconds)
      select j.id, a, j.tenant_id, j.user_id, j.gpu_model, j.gpus, s.started, case when s.open then null else s.started + s.len end,
             case when s.open then null else 'completed' end,
             j.gpus * extract(epoch from s.len), j.gpus * extract(epoch from s.len) * 0.7, j.gpus * extract(epoch from s.len) * ((hashint4(a * 31 + length(j.name)) & 255) / 1024.0)
      from (select *, substr(name, 5)::int + 1 as n from jobs) j
      cross join generate_series(1, ${ATTEMPTS_PER_JOB}) a
      cross join lateral (
        select now() - interval '180 days' + ((j.n * ${ATTEMPTS_PER_JOB} + a) * interval '180 days') / ${ROWS + ATTEMPTS_PER_JOB} as started,
               interval '10 minutes' + ((hashint4((j.n * 7 + a)::int) & 1023) * interval '84 seconds') as len,
               (j.n * ${ATTEMPTS_PER_JOB} + a) > ${ROWS - 2000} as open
      ) s
      where (j.n - 1) * ${ATTEMPTS_PER_JOB} + a <= ${ROWS}
    `.execute(h.db);
    const day = (d: number) => new Date(Date.now() + d * 86_400_000).toISOString().slice(0, 10);
    await sql`
      insert into gpu_prices (gpu_type, tenant_id, effective_from, usd_per_gpu_hour) values
        ('h100', null, ${day(-400)}::date, 2.40), ('h800', null, ${day(-400)}::date, 2.00),
        ('h100', null, ${day(-60)}::date, 2.60), ('h800', null, ${day(-60)}::date, 2.10)
    `.execute(h.db);
    await sql`
      insert into gpu_prices (gpu_type, tenant_id, effective_from, usd_per_gpu_hour)
        select g, t.id, ${day(-90)}::date, 1.90 from tenants t, unnest(array['h100', 'h800']) g where t.name in ('tenant0', 'tenant1', 'tenant2');
    `.execute(h.db);
    await sql`set session_replication_role = origin`.execute(h.db);
    const seeded = Date.now();
    await new LedgerRepository(h.db).rebuildDaily();
    await sql`analyze`.execute(h.db);
    const counts = await sql<{ ledger: number; daily: number }>`select (select count(*) from usage_ledger)::int as ledger, (select count(*) from usage_daily)::int as daily`.execute(h.db);
    console.log(`seeded ${jobs} jobs in ${((jobsAt - t0) / 1000).toFixed(1)} s, ${counts.rows[0]!.ledger} ledger rows in ${((seeded - jobsAt) / 1000).toFixed(1)} s; daily rollup ${counts.rows[0]!.daily} rows in ${((Date.now() - seeded) / 1000).toFixed(1)} s`);
    await h.close();
  }
}

async function measure(url: string): Promise<void> {
  const day = (d: number) => new Date(Date.now() + d * 86_400_000).toISOString().slice(0, 10);
  {
    const server = await startServer(
      parseServerConfig({ PORT: '0', HOST: '127.0.0.1', DATABASE_URL: url, NURI_ROLES: 'api', NURI_DEMO: '0', NURI_LOG_LEVEL: 'error', NURI_BOOTSTRAP_TOKEN: TOKEN }),
    );
    try {
      const from = day(-180);
      const to = day(1);
      for (const [q, runs] of [[`groupBy=tenant,month`, RUNS], [`groupBy=tenant,month&tenant=tenant3`, 5], [`groupBy=gpuType,day`, 5], [`groupBy=user`, 3]] as const) {
        const path = `/v1/usage?from=${from}&to=${to}&${q}`;
        const times: number[] = [];
        let rows = 0;
        for (let i = 0; i < runs + 2; i++) {
          const s = performance.now();
          const r = await fetch(server.url + path, { headers: { authorization: `Bearer ${TOKEN}` } });
          const body = (await r.json()) as { rows: unknown[] };
          if (r.status !== 200) throw new Error(`${path}: ${r.status} ${JSON.stringify(body)}`);
          if (i >= 2) times.push(performance.now() - s); // two warm-ups
          rows = body.rows.length;
        }
        console.log(`GET ${path.replace(/from=[^&]+&to=[^&]+&/, '')}: ${rows} rows, median ${percentile(times, 50).toFixed(1)} ms, p90 ${percentile(times, 90).toFixed(1)} ms, max ${Math.max(...times).toFixed(1)} ms (${runs} runs; load average ${loadavg()[0]!.toFixed(1)} on ${cpus().length} CPUs)`);
      }
    } finally {
      await server.close();
    }
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
