/** The `nuri` command line on commander: every command, its flags and help; `runCli` runs one argv and returns the exit code. */
import { Argument, Command, CommanderError, Option } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { NuriClient } from './client';
import type * as C from './commands';
import { ApiError, UnreachableError, UsageError } from './errors';
import { addSubmitOptions, buildSubmit, SUBMIT_HELP_AFTER } from './submit';

export interface Io {
  stdout: (text: string | Buffer) => void;
  stderr: (text: string) => void;
  env: NodeJS.ProcessEnv;
  cwd: string;
  now?: () => Date;
  signal?: AbortSignal;
}

/** The package's version, from the package.json above this file (source or dist, whichever runs). */
export function packageVersion(): string {
  for (let dir = __dirname; dir !== dirname(dir); dir = dirname(dir)) {
    const p = join(dir, 'package.json');
    if (existsSync(p)) {
      const pkg = JSON.parse(readFileSync(p, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'nuri') return pkg.version ?? 'unknown';
    }
  }
  return 'unknown';
}

/** What the commands do, loaded when one runs (not for --help or a usage error): start-up cost is paid on every run. */
const c = () => import('./commands');
const acc = () => import('./accounting');

const CONNECTION_HELP = `
Connection: NURI_URL (default http://127.0.0.1:8080; with or without /v1) and NURI_TOKEN.
Job ids: the 8 characters "nuri jobs" prints, or any unique prefix of 6 or more; an array's
tasks are <array id>_<index>. Every command takes --json for the API's JSON.`;

export function buildProgram(io: Io, ctx: C.Ctx, argv: readonly string[]): Command {
  const program = new Command('nuri')
    .description('nuri — the Nuri GPU scheduler from a terminal')
    .version(packageVersion(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help')
    .helpCommand('help [command]', 'show help for a command')
    .enablePositionalOptions()
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout(s), writeErr: (s) => io.stderr(s), outputError: () => undefined })
    .addHelpText('after', CONNECTION_HELP);
  const jsonOpt = () => new Option('--json', "print the API's JSON instead of text");

  addSubmitOptions(
    program
      .command('submit')
      .summary('submit a batch script or a command')
      .description('Submit a batch script (its #SBATCH/#NURI directives read) or, after --, a command run as is on each node.')
      .usage('[flags] SCRIPT [SCRIPT ARGS...]  |  [flags] -- COMMAND [ARGS...]')
      .argument('[words...]', 'the script and its arguments, or the command after --')
      .passThroughOptions(),
  )
    .addOption(jsonOpt())
    .addHelpText('after', SUBMIT_HELP_AFTER)
    .action(async (words: string[], opts: Record<string, unknown>) => {
      // Words after `--` are a command; without `--` the first word is a batch script.
      const commandMode = words.length > 0 && argv[argv.length - words.length - 1] === '--';
      const { json, ...flags } = opts;
      const { body, warnings } = await buildSubmit({ flags: flags as never, words, commandMode, cwd: io.cwd, env: io.env });
      await (await c()).submit(ctx, body, warnings, !!json);
    });

  program
    .command('jobs')
    .summary('list jobs (pending and running unless --all)')
    .description('List jobs: pending and running ones unless --all or --state; an array is one row unless -r.')
    .option('-a, --all', 'every state, ended jobs too')
    .option('-t, --state <states>', 'comma-separated: pending, running, completed, failed, cancelled, timeout, node_failed, or PD, R, CD, F, CA, TO, NF')
    .option('-n, --name <name>', 'jobs with exactly this name')
    .option('-u, --user <user>', "one user's jobs")
    .option('--tenant <tenant>', "one tenant's jobs (operators)")
    .option('--array <id>', "one array's tasks")
    .option('-r, --expand', "one row per array task (Slurm's squeue -r)")
    .option('--limit <n>', 'at most this many jobs (1-500, default 50)')
    .option('--after <cursor>', 'the next page (nuri jobs says the cursor when there is more)')
    .addOption(jsonOpt())
    .action(async (opts: C.JobsOpts) => {
      const args = argv.slice(argv.indexOf('jobs') + 1).filter((a, i, all) => a !== '--after' && all[i - 1] !== '--after' && !a.startsWith('--after='));
      await (await c()).jobs(ctx, opts, args);
    });

  program
    .command('show')
    .summary("a job's state, reason, placement, output and history")
    .argument('<id>', 'job id, unique prefix (6+), or <array id>_<index>')
    .addOption(jsonOpt())
    .action((id: string, o: { json?: boolean }) => c().then((m) => m.show(ctx, id, !!o.json)));

  program
    .command('logs')
    .summary("a job's output (stdout and stderr)")
    .description("Print a job's output (stdout and stderr as written) as it arrives; Ctrl-C stops following.")
    .argument('<id>', 'job id, unique prefix (6+), or <array id>_<index>')
    .option('-f, --follow', 'keep printing until the job ends')
    .option('-r, --rank <n>', "which node's output in a multi-node job (default 0)")
    .option('-n, --tail <lines>', 'only the last lines')
    .action((id: string, o: { follow?: boolean; rank?: string; tail?: string }) => c().then((m) => m.logs(ctx, id, o)));

  program
    .command('cancel')
    .summary('cancel jobs by id, or by name, state, user')
    .description(
      'Cancel jobs: pending ones end at once, running ones are stopped (SIGTERM, grace, SIGKILL).\n' +
        "An array's id cancels every task of it; <array id>_<index> one task. Filters combine (all must match).",
    )
    .argument('[ids...]', 'job ids, unique prefixes (6+), array ids, or <array id>_<index>')
    .option('-n, --name <name>', 'jobs with exactly this name')
    .option('-t, --state <states>', 'pending (PD), running (R), or both')
    .option('-u, --user <user>', "one user's jobs")
    .addOption(jsonOpt())
    .action((ids: string[], o: C.CancelOpts) => c().then((m) => m.cancel(ctx, ids, o)));

  program
    .command('nodes')
    .summary('nodes and their GPUs')
    .addOption(jsonOpt())
    .action((o: { json?: boolean }) => c().then((m) => m.nodes(ctx, !!o.json)));

  program
    .command('whoami')
    .summary('who the token belongs to')
    .addOption(jsonOpt())
    .action((o: { json?: boolean }) => c().then((m) => m.whoami(ctx, !!o.json)));

  const users = program
    .command('users')
    .summary('list, disable and enable users (tenant admins, operators)')
    .option('--tenant <tenant>', "one tenant's users")
    .addOption(jsonOpt())
    .action((o: { tenant?: string; json?: boolean }) => c().then((m) => m.usersList(ctx, o.tenant, !!o.json)));
  users
    .command('disable')
    .description('disable a user: every token of theirs is refused at once')
    .argument('<user>')
    .addOption(jsonOpt())
    .action((name: string, o: { json?: boolean }) => c().then((m) => m.userAction(ctx, 'disable', name, !!o.json)));
  users
    .command('enable')
    .description('enable a user again: their unexpired, unrevoked tokens work again')
    .argument('<user>')
    .addOption(jsonOpt())
    .action((name: string, o: { json?: boolean }) => c().then((m) => m.userAction(ctx, 'enable', name, !!o.json)));

  program
    .command('usage')
    .summary("GPU-hours, cost and idle share (sreport-like)")
    .description("GPU-hours, cost, idle GPU-hours and idle cost over a period (UTC days; default this month), one row per --by key: your own jobs, your tenant's for tenant admins, every tenant's for operators.")
    .option('--by <keys>', 'comma-separated: user, tenant, day, month, type, job', 'user')
    .option('--from <date>', 'first day, YYYY-MM-DD (default: the 1st of this month)')
    .option('--to <date>', 'day after the last, YYYY-MM-DD (default: tomorrow)')
    .option('-u, --user <user>', "one user's jobs (tenant admins, operators)")
    .option('--tenant <tenant>', "one tenant's jobs (operators)")
    .option('--csv', 'CSV instead of a table')
    .addOption(jsonOpt())
    .action((o: Record<string, string | boolean | undefined>) => acc().then((m) => m.usage(ctx, o as never)));

  program
    .command('history')
    .summary('finished jobs with elapsed, GPU-hours, cost and utilization (sacct-like)')
    .description('Finished jobs, newest end first: state, exit code, elapsed, GPU-hours, cost, mean GPU utilization and attempts (a requeued job ran more than once).')
    .option('--from <date>', 'ended on or after this day, YYYY-MM-DD')
    .option('--to <date>', 'ended before this day, YYYY-MM-DD')
    .option('-u, --user <user>', "one user's jobs (tenant admins, operators)")
    .option('--tenant <tenant>', "one tenant's jobs (operators)")
    .option('--limit <n>', 'at most this many jobs (1-1000, default 100)')
    .option('--csv', 'CSV instead of a table')
    .addOption(jsonOpt())
    .action((o: Record<string, string | boolean | undefined>) => acc().then((m) => m.history(ctx, o as never)));

  program
    .command('quota')
    .summary("GPUs held now against the tenant's guarantee and limit, and this month's use")
    .description("GPUs your tenant holds now per type against its guarantee and limit (held past the guarantee is borrowed, and may be reclaimed), with this month's GPU-hours and cost.")
    .option('--tenant <tenant>', 'the tenant (operators)')
    .addOption(jsonOpt())
    .action((o: { tenant?: string; json?: boolean }) => acc().then((m) => m.quota(ctx, o)));

  program
    .command('completion')
    .summary('print a shell completion script')
    .description('Print a completion script: add  eval "$(nuri completion bash)"  to ~/.bashrc, or  eval "$(nuri completion zsh)"  to ~/.zshrc.')
    .addArgument(new Argument('<shell>', 'bash or zsh').choices(['bash', 'zsh']))
    .action(async (shell: 'bash' | 'zsh') => io.stdout((await import('./completion')).completionScript(program, shell)));

  return program;
}

/** Runs one command line; the exit code: 0 done, 1 the server refused or could not be reached, 2 a usage error (nothing sent). */
export async function runCli(argv: string[], io: Io): Promise<number> {
  let client: NuriClient | undefined;
  const ctx: C.Ctx = {
    client: () => {
      if (client) return client;
      const token = io.env.NURI_TOKEN;
      if (!token) throw new UsageError('set NURI_TOKEN to your API token (the demo prints one at start)');
      const url = io.env.NURI_URL || 'http://127.0.0.1:8080';
      if (!/^https?:\/\/[^/]/.test(url)) throw new UsageError(`NURI_URL: "${url}" is not an http:// or https:// URL (e.g. http://nuri.example:8080)`);
      return (client = new NuriClient(url, token));
    },
    out: (line) => io.stdout(`${line}\n`),
    err: (line) => io.stderr(`${line}\n`),
    write: (chunk) => io.stdout(chunk),
    env: io.env,
    cwd: io.cwd,
    now: io.now ?? (() => new Date()),
    signal: io.signal,
  };
  const program = buildProgram(io, ctx, argv);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return io.signal?.aborted ? 130 : 0; // Ctrl-C while following logs
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.exitCode === 0) return 0;
      if (e.code === 'commander.help') return 2; // `nuri` alone: the help went to stderr
      const cmd = argv.find((a) => program.commands.some((x) => x.name() === a));
      io.stderr(`nuri: ${e.message.replace(/^error: /, '')} (see nuri ${cmd ? `${cmd} ` : ''}--help)\n`);
      return 2;
    }
    if (io.signal?.aborted) return 130;
    if (e instanceof UsageError) {
      io.stderr(`nuri: ${e.message}\n`);
      return 2;
    }
    if (e instanceof ApiError) {
      io.stderr(`nuri: ${e.message} (HTTP ${e.status})\n`);
      for (const i of e.body.issues ?? []) io.stderr(`  ${i.field}: ${i.rule}\n`);
      return 1;
    }
    if (e instanceof UnreachableError) {
      io.stderr(`nuri: ${e.message}\n`);
      return 1;
    }
    io.stderr(`nuri: ${(e as Error).message}\n`);
    return 1;
  }
}
