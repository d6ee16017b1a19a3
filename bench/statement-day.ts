/**
 * A tenant's statement after a simulated day (issue 15's figure): the brief's reference
 * scenario (ITP clusters 02, 03, 05, 06 and 10 as five tenants, named as the demo's, on 20
 * H100 nodes), the first day simulated by the scheduling core (apps/sim), its runs written as
 * ledger attempts into a scratch PostgreSQL database with the demo's prices (H100 2.50, H800
 * 2.00 USD per GPU-hour), then the statement the API serves, as of the end of that day (jobs
 * still running then count up to it). The simulator reports each job's last start only: time
 * lost to preemption before it is not in this figure. No utilization is simulated: idle is 0.
 *   npm run bench:statement-day -- [tenant]
 */
import { migrateToLatest, openDatabase, LedgerRepository, PricesRepository } from '@nuri/db';
import { configFor, DEFAULT_POLICY_CONFIG } from '@nuri/scheduling';
import { sql } from 'kysely';
import { join } from 'node:path';
import { autoQuotas, buildNodes, simulate } from '../apps/sim/src/engine';
import { loadTraces } from '../apps/sim/src/trace';
import { DEMO_PRICES } from '../apps/server/src/demo/demo';
import { scratchDatabase } from './support';

const TRACES = join(__dirname, '../../../shared/traces/itp-2021');
const NAMES: Record<string, string> = { cluster02: 'naver', cluster03: 'kakao', cluster05: 'lg-ai', cluster06: 'skt', cluster10: 'kt' };
const DAY0 = Date.parse('2026-11-02T00:00:00Z');

async function main(): Promise<void> {
  const tenant = process.argv[2] ?? 'naver';
  const files = Object.keys(NAMES).map((c) => join(process.env.BENCH_TRACES ?? TRACES, `${c}.csv`));
  const jobs = loadTraces(files, 1, 1, 'any');
  const nodes = buildNodes({ h100: 20, h800: 0, perLeaf: 8 });
  const { tenants } = autoQuotas(jobs, nodes);
  const r = simulate({ label: 'nuri', config: configFor('nuri', DEFAULT_POLICY_CONFIG), nodes, tenants, jobs, windowSeconds: 86400, requeue: 'restart' });
  const end = 86400;
  const runs = r.jobs.filter((j) => j.start !== null && j.start < end).map((j) => ({ ...j, to: Math.min(j.finish ?? end, end) }));
  console.log(`simulated day: ${jobs.length} jobs submitted, ${runs.length} ran (${r.jobs.filter((j) => j.preemptions > 0).length} preempted at least once)`);

  const scratch = await scratchDatabase(`nuri_bench_statement_${process.pid}`);
  try {
    const h = await openDatabase({ url: scratch.url, poolSize: 1 });
    await migrateToLatest(h.db);
    const names = [...new Set(runs.map((j) => NAMES[j.tenant] ?? j.tenant))];
    await sql`insert into tenants (name, display_name) select n, n from unnest(${names}::text[]) n`.execute(h.db);
    await sql`insert into users (name, tenant_id, role) select t.name || '-researcher', t.id, 'researcher' from tenants t`.execute(h.db);
    const rows = runs.map((j) => ({ tenant: NAMES[j.tenant] ?? j.tenant, name: j.id, gpus: j.gpus, start: new Date(DAY0 + j.start! * 1000).toISOString(), end: new Date(DAY0 + j.to * 1000).toISOString(), open: j.finish === null || j.finish > end }));
    await sql`
      with x as (select * from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as x(tenant text, name text, gpus int, start timestamptz, "end" timestamptz, open boolean)),
      j as (
        insert into jobs (tenant_id, user_id, name, state, gpus, gpu_type, gpu_model, priority, time_limit_seconds, command, env, submitted_at, queued_at, started_at, ended_at, attempts)
        select t.id, u.id, x.name, case when x.open then 'running' else 'completed' end, x.gpus, 'h100', 'h100', 'normal', 86400, '[]', '{}', x.start, x.start, x.start, case when x.open then null else x."end" end, 1
        from x join tenants t on t.name = x.tenant join users u on u.tenant_id = t.id
        returning id, tenant_id, user_id, gpus, started_at, ended_at
      )
      insert into usage_ledger (job_id, attempt, tenant_id, user_id, gpu_type, gpus, started_at, ended_at, end_state)
      select id, 1, tenant_id, user_id, 'h100', gpus, started_at, ended_at, case when ended_at is null then null else 'completed' end from j`.execute(h.db);
    await new PricesRepository(h.db).set(DEMO_PRICES.map((p) => ({ ...p, tenantId: null })));
    const ledger = new LedgerRepository(h.db);
    await ledger.rebuildDaily();
    const t = await h.db.selectFrom('tenants').select('id').where('name', '=', tenant).executeTakeFirstOrThrow();
    const lines = await ledger.statement(t.id, '2026-11', new Date(DAY0 + end * 1000));
    console.log(`statement of ${tenant} for 2026-11 as of the end of the simulated day (2026-11-03T00:00Z):`);
    for (const l of lines)
      console.log(
        `  ${l.gpuType} ${l.from}..${l.to} at ${l.usdPerGpuHour?.toFixed(2)} USD/GPU-hour (from ${l.priceEffectiveFrom}): ${(l.gpuSeconds / 3600).toFixed(1)} GPU-hours, ${l.cost.toFixed(2)} USD; idle ${(l.idleGpuSeconds / 3600).toFixed(1)} GPU-hours`,
      );
    const all = await ledger.usage(['tenant'], { from: '2026-11-01', to: '2026-12-01' }, new Date(DAY0 + end * 1000));
    for (const u of all) console.log(`  tenant ${u.tenant}: ${(u.gpuSeconds / 3600).toFixed(1)} GPU-hours, ${u.cost.toFixed(2)} USD`);
    await h.close();
  } finally {
    await scratch.drop();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
