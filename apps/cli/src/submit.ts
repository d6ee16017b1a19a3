/**
 * `nuri submit`: its flags, the `#NURI`/`#SBATCH` directives of a batch script (the same flags,
 * parsed by the same table), and the request body built from both (flags win).
 */
// The contracts' plain constants come from their zod-free module: the CLI starts without zod.
import { GPUS_PER_NODE, parseArraySpec, parseDependencySpec, RESERVED_ENV, SCRIPT_MAX_BYTES } from '@nuri/contracts/constants';
import { GPU_MODELS } from '@nuri/contracts/gpu';
import { Command, CommanderError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { UsageError } from './errors';

const ENV_VALUE_MAX = 8192;
const MAX_SECONDS = 14 * 24 * 3600;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/**
 * What `--export ALL` leaves out: the API token (a job's env is shown to everyone in the
 * tenant who looks at the job), and the submitting shell's own identity and state, which the
 * agent sets for the node (HOME, USER, LOGNAME) or which mean nothing there (PWD, SHLVL…).
 */
const NOT_EXPORTED_BY_ALL = ['NURI_TOKEN', 'HOME', 'USER', 'LOGNAME', 'PWD', 'OLDPWD', 'SHLVL', '_'];

type Key =
  | 'jobName' | 'name' | 'nodes' | 'gpus' | 'gpusPerNode' | 'gres' | 'time' | 'partition' | 'type' | 'qos' | 'priority'
  | 'chdir' | 'workdir' | 'array' | 'dependency' | 'export' | 'env' | 'requeue' | 'output' | 'error'
  // Slurm's, for batch files written for it: checked against Nuri's model, or ignored with a warning.
  | 'ntasks' | 'ntasksPerNode' | 'cpusPerTask' | 'mem' | 'memPerGpu' | 'memPerCpu' | 'exclusive' | 'account'
  | 'mailType' | 'mailUser' | 'signal' | 'openMode';

interface OptDef {
  flags: string;
  key: Key;
  help: string;
  repeat?: boolean;
  hidden?: boolean;
}

/** Every submit flag; a directive line accepts exactly these. */
export const SUBMIT_OPTIONS: OptDef[] = [
  { flags: '-J, --job-name <name>', key: 'jobName', help: 'job name (default: the script or command name; also --name)' },
  { flags: '--name <name>', key: 'name', help: 'same as --job-name', hidden: true },
  { flags: '-N, --nodes <n>', key: 'nodes', help: 'whole 8-GPU nodes; the command runs once per node' },
  { flags: '-G, --gpus <n>', key: 'gpus', help: 'GPUs in all: 1 to 8 on one node, or a multiple of 8' },
  { flags: '--gpus-per-node <n>', key: 'gpusPerNode', help: 'GPUs on each node (8 when -N is more than 1)' },
  { flags: '--gres <gpu[:type]:n>', key: 'gres', help: 'Slurm style GPUs per node, e.g. gpu:h100:8' },
  { flags: '-t, --time <time>', key: 'time', help: 'time limit: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS, or 90s, 30m, 4h, 2d' },
  { flags: '-p, --partition <type>', key: 'partition', help: 'GPU type: h100, h800 or any (also --type)' },
  { flags: '--type <type>', key: 'type', help: 'same as --partition', hidden: true },
  { flags: '-q, --qos <class>', key: 'qos', help: 'priority within your tenant: low, normal, high (also --priority)' },
  { flags: '--priority <class>', key: 'priority', help: 'same as --qos', hidden: true },
  { flags: '-D, --chdir <dir>', key: 'chdir', help: 'working directory on the node; a relative path is taken from here (also --workdir)' },
  { flags: '--workdir <dir>', key: 'workdir', help: 'same as --chdir', hidden: true },
  { flags: '-a, --array <spec>', key: 'array', help: 'job array: 0-99, 1,3,5, 0-15:4, with %N to cap how many run at once' },
  { flags: '-d, --dependency <spec>', key: 'dependency', help: 'afterok:<id>[:<id>...], afterany:..., afternotok:... (comma: all must hold)' },
  { flags: '--export <vars>', key: 'export', help: 'environment to send: NONE (default), ALL, VAR or VAR=value, comma-separated' },
  { flags: '--env <KEY=VALUE>', key: 'env', help: 'set one variable (repeatable; values may hold commas)', repeat: true },
  { flags: '--requeue', key: 'requeue', help: 'requeue the job if its node fails or it is preempted (default)' },
  { flags: '--no-requeue', key: 'requeue', help: 'never requeue it: end it instead' },
  { flags: '-o, --output <path>', key: 'output', help: 'accepted from Slurm and ignored with a warning: Nuri keeps the output (nuri logs)' },
  { flags: '-e, --error <path>', key: 'error', help: 'accepted from Slurm and ignored with a warning: Nuri keeps the output (nuri logs)' },
  // Hidden: they exist so Slurm batch files run unchanged; the help's text after the flags names them.
  { flags: '-n, --ntasks <n>', key: 'ntasks', help: 'Slurm tasks: only the node count (one task per node)', hidden: true },
  { flags: '--ntasks-per-node <n>', key: 'ntasksPerNode', help: 'Slurm tasks per node: only 1', hidden: true },
  { flags: '-c, --cpus-per-task <n>', key: 'cpusPerTask', help: 'ignored with a warning', hidden: true },
  { flags: '--mem <size>', key: 'mem', help: 'ignored with a warning', hidden: true },
  { flags: '--mem-per-gpu <size>', key: 'memPerGpu', help: 'ignored with a warning', hidden: true },
  { flags: '--mem-per-cpu <size>', key: 'memPerCpu', help: 'ignored with a warning', hidden: true },
  { flags: '--exclusive', key: 'exclusive', help: 'ignored with a warning', hidden: true },
  { flags: '-A, --account <name>', key: 'account', help: 'ignored with a warning', hidden: true },
  { flags: '--mail-type <types>', key: 'mailType', help: 'ignored with a warning', hidden: true },
  { flags: '--mail-user <address>', key: 'mailUser', help: 'ignored with a warning', hidden: true },
  { flags: '--signal <spec>', key: 'signal', help: 'ignored with a warning', hidden: true },
  { flags: '--open-mode <mode>', key: 'openMode', help: 'ignored with a warning', hidden: true },
];

export const SUBMIT_HELP_AFTER = `
Examples:
  nuri submit -G 1 -t 30 -- python train.py --lr 3e-4
  nuri submit job.sh --epochs 3          (a batch script; what follows it are its arguments)
  nuri submit -N 2 --gpus-per-node 8 -t 1-00:00:00 job.sh

Batch scripts: the comment block after the #! line (up to the first line that is neither a
comment nor blank) may hold "#SBATCH <flags>" and "#NURI <flags>" lines with the flags above.
A flag on the command line wins over the same directive; the GPU shape (-N, -G,
--gpus-per-node, --gres) is taken as a whole: any of it on the command line replaces all of
it from the script. A directive Nuri does not know is refused with its line number.
-o/--output and -e/--error are ignored with a warning: every job's output (stdout and stderr)
is kept by Nuri; read it with "nuri logs <id>".
Slurm's task flags fit Nuri's model only as one task per node: -n/--ntasks equal to the node
count and --ntasks-per-node=1 are accepted, other values refused (start one process per GPU
with torchrun). -c/--cpus-per-task, --mem, --mem-per-gpu, --mem-per-cpu, --exclusive,
-A/--account, --mail-type, --mail-user, --signal and --open-mode are accepted and ignored
with a warning saying what Nuri does instead. In the job, srun runs its command (once per
node, as the script already is) and scontrol show hostnames lists the job's nodes.

Environment: nothing from your shell is sent unless asked (unlike sbatch, whose default is
ALL), since a job's environment is stored with it and shown to your tenant.
--export ALL sends your environment except NURI_TOKEN, HOME, USER, LOGNAME, PWD, OLDPWD,
SHLVL, _, names the agent sets itself (CUDA_VISIBLE_DEVICES, MASTER_ADDR, NURI_*, ...),
names that are not valid variable names and values over ${ENV_VALUE_MAX} characters (said on stderr).
--export VAR sends VAR's value from here; VAR=value sends that value; --env KEY=VALUE too.`;

export function addSubmitOptions(cmd: Command): Command {
  for (const o of SUBMIT_OPTIONS) {
    const opt = new Option(o.flags, o.help);
    if (o.repeat) opt.argParser((v: string, prev: string[] | undefined) => [...(prev ?? []), v]);
    if (o.hidden) opt.hideHelp();
    cmd.addOption(opt);
  }
  return cmd;
}

type Values = Partial<Record<Key, string | string[] | boolean>>;
/** A value and where it came from, for messages: `--time` or `job.sh:4: #SBATCH --time`. */
interface Sourced<T = string> {
  value: T;
  label: string;
  fromScript: boolean;
}
type Merged = Partial<Record<Key, Sourced<string | string[] | boolean>>>;

const longName = (key: Key, negated = false): string => {
  const def = SUBMIT_OPTIONS.find((o) => o.key === key && o.flags.includes('--no-') === negated)!;
  return /--[a-z-]+/.exec(def.flags)![0];
};

/** The `#SBATCH`/`#NURI` lines at the top of a script, as sbatch reads them. */
export function directiveLines(text: string): { line: number; prefix: string; tokens: string[] }[] {
  const lines = text.split(/\r?\n/);
  const out: { line: number; prefix: string; tokens: string[] }[] = [];
  for (let i = lines[0]?.startsWith('#!') ? 1 : 0; i < lines.length; i++) {
    const line = lines[i]!.trimEnd();
    if (!line.trim()) continue;
    if (!line.trimStart().startsWith('#')) break;
    const m = /^#(SBATCH|NURI)(?:\s+(.*))?$/.exec(line);
    if (m) out.push({ line: i + 1, prefix: `#${m[1]}`, tokens: shellWords(m[2] ?? '') });
  }
  return out;
}

/** Splits a directive's text as a shell would (quotes, backslashes); a word starting with # ends it. */
export function shellWords(s: string): string[] {
  const words: string[] = [];
  let cur = '', inWord = false, quote: string | null = null;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '\\' && quote === '"' && i + 1 < s.length) cur += s[++i];
      else cur += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
    } else if (c === '\\' && i + 1 < s.length) {
      cur += s[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
    } else if (c === '#' && !inWord) break;
    else {
      cur += c;
      inWord = true;
    }
  }
  if (inWord) words.push(cur);
  return words;
}

/** Hints for directives that are common in Slurm scripts and mean nothing (or something else) here. */
const HINTS: Record<string, string> = {
  '--gpus-per-task': 'Nuri runs the command once per node with all its GPUs; start one process per GPU with torchrun',
  '--ntasks-per-gpu': 'Nuri runs the command once per node with all its GPUs; start one process per GPU with torchrun',
};
const PER_NODE = 'Nuri runs the batch script once per node (one task per node); start one process per GPU with torchrun';

/** Reads a script's directives with the submit flags' own table. */
export function parseDirectives(file: string, text: string): Merged {
  const out: Merged = {};
  for (const d of directiveLines(text)) {
    if (!d.tokens.length) continue;
    const where = `${file}:${d.line}: ${d.prefix}`;
    const cmd = addSubmitOptions(new Command('directive'))
      .exitOverride()
      .allowExcessArguments(false)
      .configureOutput({ writeErr: () => undefined, writeOut: () => undefined, outputError: () => undefined });
    try {
      // --exclusive=user|mcs|topo means nothing more here than --exclusive (ignored with a warning).
      cmd.parse(d.tokens.map((t) => (t.startsWith('--exclusive=') ? '--exclusive' : t)), { from: 'user' });
    } catch (e) {
      if (!(e instanceof CommanderError)) throw e;
      const quoted = /'([^']+)'/.exec(e.message)?.[1];
      if (e.code === 'commander.unknownOption') {
        const flag = (quoted ?? d.tokens[0]!).split('=')[0]!;
        throw new UsageError(`${where} ${flag}: not supported by Nuri${HINTS[flag] ? ` (${HINTS[flag]})` : ''}`);
      }
      if (e.code === 'commander.optionMissingArgument') throw new UsageError(`${where} ${quoted?.split(' ')[1] ?? quoted}: needs a value`);
      if (e.code === 'commander.excessArguments')
        throw new UsageError(`${where} ${cmd.args[0] ?? d.tokens.find((t) => !t.startsWith('-'))}: not a flag (a directive holds flags, e.g. --time=1:00:00)`);
      throw new UsageError(`${where}: ${e.message.replace(/^error: /, '')}`);
    }
    const opts = cmd.opts() as Values;
    for (const [k, v] of Object.entries(opts) as [Key, string | string[] | boolean][]) {
      const label = `${where} ${longName(k, v === false)}`;
      const prev = out[k];
      // Repeated --env lines add up; any other directive given twice: the later line wins, as in sbatch.
      out[k] = Array.isArray(v) && Array.isArray(prev?.value) ? { value: [...prev.value, ...v], label, fromScript: true } : { value: v, label, fromScript: true };
    }
  }
  return out;
}


/** `-t`: Slurm's forms (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS) and 90s, 30m, 4h, 2d. */
export function parseTime(label: string, v: string): number {
  const s = v.trim();
  let seconds: number | undefined;
  let m: RegExpExecArray | null;
  if ((m = /^(\d+)([smhd])$/.exec(s))) seconds = Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[m[2] as 's' | 'm' | 'h' | 'd'];
  else if ((m = /^(\d+)-(\d+)(?::(\d+)(?::(\d+))?)?$/.exec(s))) seconds = Number(m[1]) * 86400 + Number(m[2]) * 3600 + Number(m[3] ?? 0) * 60 + Number(m[4] ?? 0);
  else if ((m = /^(\d+)(?::(\d+)(?::(\d+))?)?$/.exec(s)))
    seconds = m[3] !== undefined ? Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]) : Number(m[1]) * 60 + Number(m[2] ?? 0);
  if (seconds === undefined)
    throw new UsageError(`${label}: "${v}" is not a time limit (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS, or 90s, 30m, 4h, 2d)`);
  if (seconds < 1) throw new UsageError(`${label}: "${v}": the time limit must be more than 0`);
  if (seconds > MAX_SECONDS) throw new UsageError(`${label}: "${v}": the time limit is at most 14 days (14-00:00:00)`);
  return seconds;
}

const positiveInt = (label: string, v: string, max: number): number => {
  if (!/^\d+$/.test(v.trim()) || Number(v) < 1 || Number(v) > max) throw new UsageError(`${label}: "${v}" is not a whole number from 1 to ${max}`);
  return Number(v);
};

/** `--export`: NONE, ALL, VAR, VAR=value, comma-separated. Returns the variables and what ALL left out. */
export function exportEnv(label: string, spec: string, env: NodeJS.ProcessEnv): { vars: Record<string, string>; skipped: string[] } {
  const vars: Record<string, string> = {};
  const skipped: string[] = [];
  const parts = spec.split(',').map((p) => p.trim()).filter(Boolean);
  if (!parts.length) throw new UsageError(`${label}: give NONE, ALL, or VAR / VAR=value names`);
  parts.forEach((part, i) => {
    if (part === 'NONE') {
      if (parts.length > 1) throw new UsageError(`${label}: NONE stands alone (it sends nothing)`);
    } else if (part === 'ALL') {
      if (i !== 0) throw new UsageError(`${label}: ALL comes first (ALL,VAR=value)`);
      for (const [k, v] of Object.entries(env)) {
        if (v === undefined || NOT_EXPORTED_BY_ALL.includes(k)) continue;
        if (!ENV_NAME.test(k) || RESERVED_ENV.includes(k) || v.length > ENV_VALUE_MAX) skipped.push(k);
        else vars[k] = v;
      }
    } else {
      const eq = part.indexOf('=');
      const name = eq === -1 ? part : part.slice(0, eq);
      checkEnvName(label, name);
      if (name === 'NURI_TOKEN') throw new UsageError(`${label}: NURI_TOKEN is not sent: a job's environment is shown to everyone in your tenant who looks at it`);
      const value = eq === -1 ? env[name] : part.slice(eq + 1);
      if (value === undefined) throw new UsageError(`${label}: ${name} is not set here (give ${name}=value to send a value)`);
      checkEnvValue(label, name, value);
      vars[name] = value;
    }
  });
  return { vars, skipped };
}

function checkEnvName(label: string, name: string): void {
  if (!ENV_NAME.test(name)) throw new UsageError(`${label}: "${name}" is not a variable name (letters, digits, _; not starting with a digit)`);
  if (RESERVED_ENV.includes(name)) throw new UsageError(`${label}: ${name} is set by Nuri on the node (${RESERVED_ENV.join(', ')} are)`);
}
function checkEnvValue(label: string, name: string, value: string): void {
  if (value.length > ENV_VALUE_MAX) throw new UsageError(`${label}: ${name}'s value is over ${ENV_VALUE_MAX} characters`);
}

/** The POST /v1/jobs body (SubmitJob's input). */
export interface SubmitBody {
  name: string;
  gpus: number;
  gpuType: string;
  timeLimitSeconds: number;
  command: string[];
  script?: string;
  env: Record<string, string>;
  workingDir?: string;
  priority?: string;
  requeue?: boolean;
  array?: string;
  dependency?: string;
}

export interface SubmitRequest {
  /** Flags from the command line (commander's opts()). */
  flags: Values;
  /** The words after the flags: a script and its arguments, or (after --) the command. */
  words: string[];
  /** True when the words came after `--`: a command to run as is, no script. */
  commandMode: boolean;
  cwd: string;
  env: NodeJS.ProcessEnv;
}

/** Builds the request from flags and (for a script) its directives; every refusal is a UsageError naming its source. */
export async function buildSubmit(req: SubmitRequest): Promise<{ body: SubmitBody; warnings: string[] }> {
  const warnings: string[] = [];
  const cli: Merged = {};
  for (const [k, v] of Object.entries(req.flags) as [Key, string | string[] | boolean][]) {
    if (k === ('json' as Key)) continue;
    cli[k] = { value: v, label: longName(k, v === false), fromScript: false };
  }
  if (!req.words.length)
    throw new UsageError('give a batch script (nuri submit job.sh [args]) or the command after -- (nuri submit -G 1 -t 1:00:00 -- python train.py)');

  let script: string | undefined;
  let scriptName: string | undefined;
  let directives: Merged = {};
  if (!req.commandMode) {
    const file = req.words[0]!;
    let buf: Buffer;
    try {
      buf = readFileSync(resolve(req.cwd, file));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new UsageError(
        code === 'ENOENT'
          ? `${file}: no such file (to run a command on the node instead, put it after --: nuri submit [flags] -- ${req.words.join(' ')})`
          : `${file}: cannot read it (${(e as Error).message})`,
      );
    }
    if (buf.length > SCRIPT_MAX_BYTES) throw new UsageError(`${file}: a batch script is at most ${SCRIPT_MAX_BYTES} bytes (this one has ${buf.length})`);
    script = buf.toString('utf8');
    if (!script.startsWith('#!')) throw new UsageError(`${file}:1: a batch script starts with #! naming its interpreter (e.g. #!/bin/bash)`);
    if (script.includes('\u0000')) throw new UsageError(`${file}: a batch script is text (this one holds a NUL byte)`);
    scriptName = basename(file);
    directives = parseDirectives(file, script);
  }

  // The GPU shape is taken as a whole: any of it on the command line replaces the script's.
  const shape: Key[] = ['nodes', 'gpus', 'gpusPerNode', 'gres'];
  if (shape.some((k) => cli[k])) for (const k of shape) if (k !== 'gres') delete directives[k];
  const gresFromScript = shape.some((k) => cli[k]) ? undefined : directives.gres;
  delete directives.gres;
  const o: Merged = { ...directives, ...cli };
  if (gresFromScript && !cli.gres) o.gres = gresFromScript;
  if (directives.env && cli.env) o.env = { ...cli.env, value: [...(directives.env.value as string[]), ...(cli.env.value as string[])] };
  const str = (k: Key): Sourced<string> | undefined => o[k] as Sourced<string> | undefined;
  const pick = (a: Key, b: Key): Sourced<string> | undefined => (cli[a] ? str(a) : cli[b] ? str(b) : str(a) ?? str(b));

  for (const k of ['output', 'error'] as const) {
    const s = str(k);
    if (s) warnings.push(`${s.label}: ignored: Nuri keeps every job's output (stdout and stderr) itself; read it with "nuri logs <id>"`);
  }

  // GPUs.
  const nodesS = str('nodes');
  const nodes = nodesS ? positiveInt(nodesS.label, nodesS.value, 512) : undefined;
  let perNode: Sourced<number> | undefined;
  let gresType: Sourced<string> | undefined;
  const gres = str('gres');
  if (gres) {
    const m = /^gpu(?::([A-Za-z][A-Za-z0-9_]*))?(?::(\d+))?$/.exec(gres.value.trim());
    if (!m) throw new UsageError(`${gres.label}: "${gres.value}" is not gpu[:type]:count (e.g. gpu:8 or gpu:h100:8; Nuri schedules GPUs only)`);
    const count = m[2] === undefined ? 1 : positiveInt(gres.label, m[2], GPUS_PER_NODE);
    perNode = { value: count, label: gres.label, fromScript: gres.fromScript };
    if (m[1]) gresType = { value: m[1].toLowerCase(), label: gres.label, fromScript: gres.fromScript };
  }
  const gpnS = str('gpusPerNode');
  if (gpnS) {
    const v = positiveInt(gpnS.label, gpnS.value, GPUS_PER_NODE);
    if (perNode && perNode.value !== v) throw new UsageError(`${gpnS.label} ${v} and ${perNode.label} ${perNode.value} disagree on GPUs per node`);
    perNode = { value: v, label: gpnS.label, fromScript: gpnS.fromScript };
  }
  const totalS = str('gpus');
  const total = totalS ? positiveInt(totalS.label, totalS.value, 4096) : undefined;
  let gpus: number;
  const nodesLabel = nodesS?.label ?? '-N/--nodes';
  if (perNode) {
    const n = nodes ?? 1;
    if (n > 1 && perNode.value !== GPUS_PER_NODE)
      throw new UsageError(
        `${perNode.label}: Nuri places multi-node jobs on whole ${GPUS_PER_NODE}-GPU nodes: with ${n} nodes (${nodesLabel}) give ${GPUS_PER_NODE} GPUs per node, or run on one node`,
      );
    gpus = n * perNode.value;
    if (total !== undefined && total !== gpus)
      throw new UsageError(`${totalS!.label} ${total} disagrees with ${n} node(s) × ${perNode.value} GPUs per node (${perNode.label})`);
  } else if (total !== undefined) {
    if (nodes !== undefined && nodes > 1 && total !== nodes * GPUS_PER_NODE)
      throw new UsageError(`${totalS!.label} ${total}: Nuri places multi-node jobs on whole ${GPUS_PER_NODE}-GPU nodes: ${nodes} nodes (${nodesLabel}) take ${nodes * GPUS_PER_NODE} GPUs`);
    if (nodes === 1 && total > GPUS_PER_NODE) throw new UsageError(`${totalS!.label} ${total}: one node (${nodesLabel} 1) has ${GPUS_PER_NODE} GPUs`);
    gpus = total;
  } else if (nodes !== undefined) gpus = nodes * GPUS_PER_NODE;
  else throw new UsageError('say how many GPUs: -G/--gpus N in all, -N/--nodes N (whole 8-GPU nodes), --gpus-per-node N or --gres=gpu:N');
  if (gpus > GPUS_PER_NODE && gpus % GPUS_PER_NODE !== 0)
    throw new UsageError(`${totalS?.label ?? '-G/--gpus'} ${gpus}: 1 to ${GPUS_PER_NODE} GPUs on one node, or a multiple of ${GPUS_PER_NODE} for whole nodes`);

  // Slurm tasks: Nuri's model is one task per node (the script itself), so only that is taken.
  const nodeCount = gpus > GPUS_PER_NODE ? gpus / GPUS_PER_NODE : 1;
  const tpn = str('ntasksPerNode');
  if (tpn && positiveInt(tpn.label, tpn.value, 4096) !== 1) throw new UsageError(`${tpn.label} ${tpn.value}: ${PER_NODE} (--ntasks-per-node=1)`);
  const tasks = str('ntasks');
  if (tasks && positiveInt(tasks.label, tasks.value, 1 << 20) !== nodeCount)
    throw new UsageError(`${tasks.label} ${tasks.value}: ${PER_NODE}, so this job of ${nodeCount} node(s) has ${nodeCount} task(s)`);
  const ignored = (k: Key, why: string) => {
    const s = o[k] as Sourced<unknown> | undefined;
    if (s) warnings.push(`${s.label}: ignored: ${why}`);
  };
  ignored('cpusPerTask', 'Nuri schedules GPUs only; a job uses the CPUs of its node (a job on whole nodes has them to itself)');
  for (const k of ['mem', 'memPerGpu', 'memPerCpu'] as const)
    ignored(k, "Nuri takes no memory request; a node's operator may cap each job's memory per GPU it holds");
  ignored(
    'exclusive',
    gpus >= GPUS_PER_NODE
      ? `a job on whole ${GPUS_PER_NODE}-GPU nodes has them to itself`
      : `this job holds ${gpus} of its node's ${GPUS_PER_NODE} GPUs, and other jobs may run on the rest (ask for ${GPUS_PER_NODE} GPUs to have the node to itself)`,
  );
  ignored('account', 'the tenant charged is your token\'s (nuri whoami)');
  for (const k of ['mailType', 'mailUser'] as const) ignored(k, 'Nuri sends no mail; watch the job with nuri show or nuri logs -f');
  ignored('signal', 'Nuri sends no early signal: at the time limit the job gets SIGTERM, then SIGKILL after a grace period');
  ignored('openMode', "Nuri keeps the output itself, and a later attempt's output follows the earlier one's (nuri logs)");

  // GPU type.
  const part = pick('partition', 'type');
  let gpuType = 'any';
  if (part) {
    gpuType = part.value.toLowerCase();
    if (gpuType !== 'any' && !(GPU_MODELS as readonly string[]).includes(gpuType)) throw new UsageError(`${part.label}: "${part.value}" is not a GPU type (${GPU_MODELS.join(', ')}, any)`);
    if (gresType && gresType.value !== gpuType) throw new UsageError(`${part.label} ${gpuType} and ${gresType.label} ${gresType.value} disagree on the GPU type`);
  } else if (gresType) {
    gpuType = gresType.value;
    if (!(GPU_MODELS as readonly string[]).includes(gpuType)) throw new UsageError(`${gresType.label}: "${gresType.value}" is not a GPU type (${GPU_MODELS.join(', ')})`);
  }

  const timeS = str('time');
  if (!timeS) throw new UsageError('give a time limit: -t/--time (or #SBATCH --time in the script); the job is stopped when it runs out');
  const timeLimitSeconds = parseTime(timeS.label, timeS.value);

  const body: SubmitBody = {
    name: '',
    gpus,
    gpuType,
    timeLimitSeconds,
    command: req.commandMode ? req.words : req.words.slice(1),
    env: {},
  };
  if (script !== undefined) body.script = script;
  const nameS = pick('jobName', 'name');
  body.name = nameS?.value ?? scriptName ?? basename(req.words[0]!);
  if (!body.name.trim() || body.name.length > 128) throw new UsageError(`${nameS?.label ?? '-J/--job-name'}: a job name has 1 to 128 characters`);

  const prio = pick('qos', 'priority');
  if (prio) {
    if (!['low', 'normal', 'high'].includes(prio.value)) throw new UsageError(`${prio.label}: "${prio.value}" is not a priority class (low, normal, high)`);
    body.priority = prio.value;
  }
  const dir = pick('chdir', 'workdir');
  if (dir) body.workingDir = resolve(req.cwd, dir.value);
  const requeue = o.requeue as Sourced<boolean> | undefined;
  if (requeue) body.requeue = requeue.value;

  // Environment: --export first, then --env (which wins for a name in both).
  const exp = str('export');
  if (exp) {
    const { vars, skipped } = exportEnv(exp.label, exp.value, req.env);
    Object.assign(body.env, vars);
    if (skipped.length) warnings.push(`${exp.label}: not sent: ${skipped.join(', ')} (set by Nuri on the node, not a variable name, or over ${ENV_VALUE_MAX} characters)`);
  }
  const envS = o.env as Sourced<string[]> | undefined;
  for (const kv of envS?.value ?? []) {
    const eq = kv.indexOf('=');
    if (eq < 1) throw new UsageError(`${envS!.label}: "${kv}" is not KEY=VALUE`);
    const name = kv.slice(0, eq);
    checkEnvName(envS!.label, name);
    checkEnvValue(envS!.label, name, kv.slice(eq + 1));
    body.env[name] = kv.slice(eq + 1);
  }

  // Arrays and dependencies: checked here with the API's own parsers (zod-free), before anything is sent.
  for (const [key, parse] of [
    ['array', parseArraySpec],
    ['dependency', parseDependencySpec],
  ] as const) {
    const s = str(key);
    if (!s) continue;
    const r = parse(s.value);
    if ('error' in r) throw new UsageError(`${s.label}: ${r.error}`);
    body[key] = s.value;
  }
  return { body, warnings };
}
