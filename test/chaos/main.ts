#!/usr/bin/env node
/**
 * npm run chaos -- --seed N --minutes M     (see test/chaos/README.md)
 *
 *   --seed N            the seed of the workload and the fault schedule (default 1)
 *   --seeds A-B         several seeds, one run each, then a summary line per seed
 *   --minutes M         how long faults are injected (default 1.5); jobs scale with it
 *   --jobs J            jobs submitted (default max(50, 40 per minute of faults))
 *   --quiesce S         how long to wait for every job to end after the faults (default 60, or 120 for soaks)
 *   --keep              keep the run directory (logs, plan, database dump) even when the run passes
 *   --quiet             only the reports, no progress lines
 *   --product DIR       build the product from DIR (apps/, libs/, .swcrc of another checkout) instead of this one
 * Exits 1 when any run found a violation (or could not run), 0 otherwise.
 */
import { cleanupActiveRuns, formatReport, runChaos, type ChaosReport } from './harness';

function parse(argv: string[]) {
  const o = { seeds: [1], minutes: 1.5, jobs: undefined as number | undefined, quiesce: undefined as number | undefined, keep: false, quiet: false, product: undefined as string | undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const val = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--seed') o.seeds = [int(val(), a)];
    else if (a === '--seeds') {
      const m = /^(\d+)-(\d+)$/.exec(val());
      if (!m || Number(m[2]) < Number(m[1])) throw new Error('--seeds takes A-B');
      o.seeds = Array.from({ length: Number(m[2]) - Number(m[1]) + 1 }, (_, k) => Number(m[1]) + k);
    } else if (a === '--minutes') {
      o.minutes = Number(val());
      if (!(o.minutes > 0)) throw new Error('--minutes must be positive');
    } else if (a === '--jobs') o.jobs = int(val(), a);
    else if (a === '--quiesce') o.quiesce = int(val(), a);
    else if (a === '--keep') o.keep = true;
    else if (a === '--quiet') o.quiet = true;
    else if (a === '--product') o.product = val();
    else if (a === '--help' || a === '-h') {
      process.stdout.write('usage: npm run chaos -- [--seed N | --seeds A-B] [--minutes M] [--jobs J] [--quiesce S] [--keep] [--quiet] [--product DIR]\n');
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  return o;
}

function int(s: string, flag: string): number {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${flag} takes a non-negative integer`);
  return n;
}

async function main(): Promise<number> {
  let o: ReturnType<typeof parse>;
  try {
    o = parse(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`chaos: ${(e as Error).message}\n`);
    return 2;
  }
  const bye = async (sig: string) => {
    process.stderr.write(`\nchaos: ${sig}, cleaning up\n`);
    await cleanupActiveRuns();
    process.exit(130);
  };
  process.once('SIGINT', () => void bye('SIGINT'));
  process.once('SIGTERM', () => void bye('SIGTERM'));

  const reports: ChaosReport[] = [];
  let failed = false;
  for (const seed of o.seeds) {
    try {
      const r = await runChaos({
        seed,
        faultSeconds: Math.round(o.minutes * 60),
        jobs: o.jobs ?? Math.max(50, Math.round(40 * o.minutes)),
        quiesceTimeoutSeconds: o.quiesce ?? (o.minutes > 5 ? 120 : 60),
        keep: o.keep ? 'always' : 'on-failure',
        ...(o.product ? { productDir: o.product } : {}),
        log: o.quiet ? () => undefined : (l) => process.stdout.write(`${l}\n`),
      });
      reports.push(r);
      process.stdout.write(`\n${formatReport(r)}\n\n`);
      if (r.violations.length || r.harnessErrors.length || Object.keys(r.crashes).length || r.nodesNotUp.length || r.nodeDownsWithoutAgentFault.length) failed = true;
    } catch (e) {
      failed = true;
      process.stdout.write(`\nchaos seed ${seed}: could not run: ${(e as Error).stack ?? e}\n\n`);
    }
  }
  if (reports.length > 1) {
    process.stdout.write('seed  faults  jobs  violations  quiesce\n');
    for (const r of reports)
      process.stdout.write(
        `${String(r.seed).padEnd(6)}${String(r.faults.length).padEnd(8)}${String(r.jobsSubmitted).padEnd(6)}${String(r.violations.length).padEnd(12)}${r.quiesced ? `${(r.quiesceMs / 1000).toFixed(1)} s` : 'no'}\n`,
      );
  }
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  async (e) => {
    process.stderr.write(`chaos: ${(e as Error).stack ?? e}\n`);
    await cleanupActiveRuns();
    process.exit(1);
  },
);
