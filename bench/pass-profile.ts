/**
 * Where a live scheduler pass spends its time (issue 13): a scratch PostgreSQL database seeded
 * by SQL with 4,000 nodes (32,000 GPUs, about 90% busy), 5 tenants and 100,000 pending jobs of
 * mixed sizes, types and priorities; the scheduler role started in-process; then passes, each
 * after a little churn (some running jobs end), printed stage by stage (PassResult.stages).
 *   npm run build -s && node dist/bench/pass-profile.js
 * BENCH_PENDING, BENCH_NODES and BENCH_PASSES change the size; BENCH_FILLFACTOR=100 seeds jobs
 * without the room migration 0008 leaves for in-place (HOT) updates, to compare. BENCH_EXPRESS
 * (20): newcomers given to express starts after the passes, timed. BENCH_HEARTBEAT_MS (0: off):
 * every node's last_heartbeat_at written that often meanwhile, as the gateway's liveness flush
 * does (at 1000 ms the commit's median went from about 110 to 176 ms: its FOR SHARE waits).
 */
import { loadavg } from 'node:os';
import { parseServerConfig } from '@nuri/config';
import { migrateToLatest, openDatabase } from '@nuri/db';
import { sql } from 'kysely';
import { startServer } from '../apps/server/src/bootstrap';
import { SchedulerService, type PassResult } from '../apps/server/src/scheduler/scheduler.service';
import { percentile, scratchDatabase } from './support';

const PENDING = Number(process.env.BENCH_PENDING ?? 100_000);
const NODES = Number(process.env.BENCH_NODES ?? 4_000);
const PASSES = Number(process.env.BENCH_PASSES ?? 8);
/** Running jobs ended before each pass, so passes start jobs and positions move. */
const CHURN = Number(process.env.BENCH_CHURN ?? 40);
/** Newcomers given to express starts after the passes, one at a time. */
const EXPRESS = Number(process.env.BENCH_EXPRESS ?? 20);

async function seed(url: string): Promise<void> {
  const h = await openDatabase({ url, poolSize: 2 });
  await migrateToLatest(h.db);
  const db = h.db;
  await sql`
    insert into tenants (name, display_name) select 'tenant' || i, 'Tenant ' || i from generate_series(0, 4) i;
    insert into quotas (tenant_id, gpu_type, guaranteed, "limit")
      select t.id, g, ${sql.lit(NODES)} * 4 / 10, ${sql.lit(NODES)} * 4 / 10 + ${sql.lit(NODES * 2)}
      from tenants t, unnest(array['h100', 'h800']) g;
    insert into users (name, tenant_id, role) select 'user-' || t.name, t.id, 'researcher' from tenants t;
    insert into nodes (name, gpu_type, rack, leaf_switch, state, agent_token_hash, last_heartbeat_at, connected)
      select 'n' || lpad(i::text, 5, '0'), case when i % 2 = 0 then 'h100' else 'h800' end,
        'rack' || (i / 32), 'leaf' || (i / 32), 'up', md5(i::text), now(), true
      from generate_series(0, ${sql.lit(NODES)} - 1) i;
    insert into gpus (node_id, index, healthy) select n.id, g, true from nodes n, generate_series(0, 7) g;
  `.execute(db);
  if (process.env.BENCH_FILLFACTOR) await sql`alter table jobs set (fillfactor = ${sql.lit(Number(process.env.BENCH_FILLFACTOR))})`.execute(db);
  // 90% of nodes run one whole-node job: every tenant over its guarantee (no reclaim: without agents, preempted jobs would never stop).
  await sql`
    insert into jobs (tenant_id, user_id, name, state, gpus, gpu_type, gpu_model, priority, time_limit_seconds, command, env,
                      submitted_at, queued_at, started_at, attempts, master_port)
      select t.id, u.id, 'run-' || n.name, 'running', 8, n.gpu_type, n.gpu_type, 'normal', 86400, '["sleep","3600"]', '{}',
        now() - interval '2 hours', now() - interval '2 hours', now() - (substr(n.name, 2)::int % 3600) * interval '1 second', 1, 29500
      from nodes n
      join tenants t on t.name = 'tenant' || (substr(n.name, 2)::int % 5)
      join users u on u.tenant_id = t.id
      where substr(n.name, 2)::int % 10 <> 0;
    insert into allocations (job_id, node_id, gpu_index, created_at)
      select j.id, n.id, g, now() from jobs j join nodes n on j.name = 'run-' || n.name, generate_series(0, 7) g;
  `.execute(db);
  await sql`
    insert into jobs (tenant_id, user_id, name, state, gpus, gpu_type, priority, time_limit_seconds, command, env, script,
                      submitted_at, queued_at)
      select t.id, u.id, 'job-' || i, 'pending',
        (array[1, 1, 2, 4, 8, 8, 16, 32])[1 + i % 8],
        (array['h100', 'h800', 'any'])[1 + (i / 8) % 3],
        (array['normal', 'normal', 'high', 'low'])[1 + (i / 24) % 4],
        3600 * (1 + i % 24),
        '["python","train.py","--config","configs/experiment.yaml","--seed","42"]',
        '{"WANDB_PROJECT":"nuri","NCCL_DEBUG":"WARN","OMP_NUM_THREADS":"8"}',
        case when i % 4 = 0 then e'#!/bin/bash\n#SBATCH --gpus=8\nsrun python train.py "$@"\n' end,
        now() - (${sql.lit(PENDING)} - i) * interval '100 milliseconds', now() - (${sql.lit(PENDING)} - i) * interval '100 milliseconds'
      from generate_series(0, ${sql.lit(PENDING)} - 1) i
      join tenants t on t.name = 'tenant' || (i % 5)
      join users u on u.tenant_id = t.id;
    analyze;
  `.execute(db);
  await h.close();
}

/** Ends `n` running jobs (as if they completed) and refreshes every node's heartbeat. */
async function churn(db: Awaited<ReturnType<typeof openDatabase>>['db'], n: number): Promise<void> {
  await sql`
    with done as (
      update jobs set state = 'completed', ended_at = now(), exit_code = 0
      where id in (select id from jobs where state = 'running' order by started_at limit ${n}) returning id
    )
    update allocations set released_at = now() where released_at is null and job_id in (select id from done)`.execute(db);
  await sql`update nodes set last_heartbeat_at = now()`.execute(db);
}

const fmt = (ms: number) => ms.toFixed(0).padStart(6);

async function main() {
  const scratch = await scratchDatabase(`nuri_pass_profile_${process.pid}`);
  try {
    let t = performance.now();
    await seed(scratch.url);
    console.log(`seeded ${NODES} nodes, ${PENDING} pending jobs in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    const config = parseServerConfig({
      PORT: '0',
      HOST: '127.0.0.1',
      DATABASE_URL: scratch.url,
      NURI_LOG_LEVEL: 'error',
      NURI_ROLES: 'scheduler',
      NURI_DEMO: '0',
      NURI_SCHEDULER_TICK_MS: '600000',
      NURI_NODE_DOWN_AFTER_SECONDS: '3600',
    });
    t = performance.now();
    const server = await startServer(config);
    const scheduler = server.app.get(SchedulerService);
    await scheduler.idle();
    console.log(`started and ran the first (bootstrap) pass in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    // The gateway's liveness flush: every node's last_heartbeat_at in one statement, as often as it runs.
    const beatMs = Number(process.env.BENCH_HEARTBEAT_MS ?? 0);
    let beating = false;
    const beat = beatMs
      ? setInterval(() => {
          if (beating) return;
          beating = true;
          void sql`update nodes set last_heartbeat_at = now() where id in (select id from nodes)`.execute(server.database.db).finally(() => (beating = false));
        }, beatMs)
      : undefined;
    const results: PassResult[] = [];
    try {
      for (let i = 0; i < PASSES; i++) {
        await churn(server.database.db, CHURN);
        const r = await scheduler.pass();
        results.push(r);
        const stages = Object.entries(r.stages)
          .map(([k, v]) => `${k}=${v.toFixed(0)}`)
          .join(' ');
        console.log(`pass ${i}: ${fmt(r.durationMs)} ms, started ${r.started.length}, planned ${r.plan.pending.length}, annotated ${r.annotated} ${JSON.stringify(r.annotatedBecause)} | ${stages} | load ${loadavg()[0]!.toFixed(2)}`);
      }
      // Express starts: one newcomer at a time, as a researcher's submit between passes.
      const express: number[] = [];
      let expressStarted = 0;
      for (let i = 0; i < EXPRESS; i++) {
        await sql`
          insert into jobs (tenant_id, user_id, name, state, gpus, gpu_type, priority, time_limit_seconds, command, env, submitted_at, queued_at)
          select t.id, u.id, 'express-' || ${i}::int, 'pending', 1, 'h100', 'normal', 600, '["true"]', '{}', now(), now()
          from tenants t join users u on u.tenant_id = t.id where t.name = 'tenant' || (${i}::int % 5)`.execute(server.database.db);
        const t1 = performance.now();
        expressStarted += (await scheduler.expressPass()).started.length;
        express.push(performance.now() - t1);
      }
      if (EXPRESS) console.log(`express starts: ${expressStarted}/${EXPRESS} started; express pass p50 ${percentile(express, 50).toFixed(1)} ms, max ${Math.max(...express).toFixed(1)} ms`);
      const mem = process.memoryUsage();
      (globalThis as { gc?: () => void }).gc?.();
      const after = process.memoryUsage();
      const mib = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;
      console.log(`memory: rss ${mib(mem.rss)}, heap used ${mib(mem.heapUsed)} of ${mib(mem.heapTotal)}; after a full GC heap used ${mib(after.heapUsed)}, rss ${mib(after.rss)}`);
      const hot = await sql<{ upd: number; hot: number }>`select n_tup_upd as upd, n_tup_hot_upd as hot from pg_stat_user_tables where relname = 'jobs'`.execute(server.database.db);
      console.log(`jobs rows updated ${hot.rows[0]?.upd}, of which in place (HOT) ${hot.rows[0]?.hot}`);
    } finally {
      clearInterval(beat);
      await server.app.close();
    }
    const keys = [...new Set(results.flatMap((r) => Object.keys(r.stages)))];
    console.log(`\nmedian over ${results.length} passes (ms):`);
    console.log(`  total ${fmt(percentile(results.map((r) => r.durationMs), 50))}`);
    for (const k of keys) console.log(`  ${k.padEnd(22)} ${fmt(percentile(results.map((r) => r.stages[k] ?? 0), 50))}`);
    console.log(`load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  } finally {
    await scratch.drop();
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
