import { closeSync, constants, fchmodSync, fstatSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { agentDir } from './isolation';

/**
 * Slurm's `srun` and `scontrol show hostnames` for batch files written for Slurm, as small
 * POSIX sh programs the agent writes into `<workDir>/compat/bin` and appends to every job's
 * PATH (a real Slurm install earlier in PATH wins). They take their arguments as "$@" only:
 * nothing is evaluated or split again.
 */

/**
 * Nuri runs the batch script once on every node of the job, which is what `srun cmd` inside
 * an sbatch script achieves on Slurm (one task per node); so srun skips its own options and
 * execs the command here. A task count other than one per node is said on stderr (the
 * command still runs once per node); an option it does not know is refused rather than
 * guessed, since guessing wrong would run an option's value as the command.
 */
export const SRUN = `#!/bin/sh
# srun in a Nuri job (written by nuri-agent; changes are overwritten).
# Nuri already runs the batch script once on each node of the job, so srun runs its command
# here, once: srun's options are skipped and the command is exec'd with its arguments as given.
nodes=\${SLURM_NNODES:-1}
note() { printf 'srun (Nuri): %s\\n' "$1" >&2; }
count() {
  [ "$2" = "$3" ] || note "$1 $2 is not used: the command runs once on each of the job's $nodes node(s), as the batch script does (start one process per GPU with torchrun)"
}
while [ $# -gt 0 ]; do
  opt=$1
  case $opt in
    --) shift; break ;;
    --ntasks=* | --nodes=*) count "\${opt%%=*}" "\${opt#*=}" "$nodes"; shift ;;
    --ntasks-per-node=*) count --ntasks-per-node "\${opt#*=}" 1; shift ;;
    --*=*) shift ;;
    --ntasks | --nodes | --ntasks-per-node | --cpus-per-task | --gpus-per-node | --gpus | --gres | --gpus-per-task | \\
    --export | --container-image | --container-mounts | --container-workdir | --container-name | --mpi | --cpu-bind | \\
    --mem-bind | --gpu-bind | --time | --job-name | --output | --error | --input | --nodelist | --exclude | --chdir | \\
    --partition | --account | --distribution | --mem | --mem-per-gpu | --mem-per-cpu | --constraint | --dependency | \\
    --qos | --signal | --jobid | --het-group | --cpu-freq | --network | --open-mode | --wait | --reservation | --threads)
      [ $# -ge 2 ] || { note "$opt needs a value"; exit 2; }
      case $opt in
        --ntasks | --nodes) count "$opt" "$2" "$nodes" ;;
        --ntasks-per-node) count "$opt" "$2" 1 ;;
      esac
      shift 2 ;;
    --label | --unbuffered | --kill-on-bad-exit | --no-kill | --exclusive | --overlap | --exact | --whole | --quiet | \\
    --verbose | --overcommit | --oversubscribe | --disable-status | --pty | --no-allocate)
      shift ;;
    -n | -N)
      [ $# -ge 2 ] || { note "$opt needs a value"; exit 2; }
      count "$opt" "$2" "$nodes"; shift 2 ;;
    -n?* | -N?*) count "\${opt%"\${opt#-?}"}" "\${opt#-?}" "$nodes"; shift ;;
    -c | -G | -t | -J | -o | -e | -i | -w | -x | -D | -p | -A | -m | -C | -d | -q | -T | -W)
      [ $# -ge 2 ] || { note "$opt needs a value"; exit 2; }
      shift 2 ;;
    -c?* | -G?* | -t?* | -J?* | -o?* | -e?* | -i?* | -w?* | -x?* | -D?* | -p?* | -A?* | -m?* | -C?* | -d?* | -q?* | -T?* | -W?*) shift ;;
    -l | -u | -K | -K?* | -k | -Q | -v | -X | -s | -O) shift ;;
    -*) note "$opt: not an option srun knows in a Nuri job (give its value as $opt=value, or run the command without srun)"; exit 2 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { note 'no command given'; exit 2; }
exec "$@"
`;

/** Batch files take the first node as MASTER_ADDR with `scontrol show hostnames`; that is all scontrol does in a job. */
export const SCONTROL = `#!/bin/sh
# scontrol in a Nuri job (written by nuri-agent; changes are overwritten).
# Only "scontrol show hostnames [list]": one name per line of a comma-separated node list
# (SLURM_JOB_NODELIST when none is given), as batch files use it to find their first node.
if [ "$1" = show ] && { [ "$2" = hostnames ] || [ "$2" = hostname ]; } && [ $# -le 3 ]; then
  if [ $# -eq 3 ]; then list=$3; else list=\${SLURM_JOB_NODELIST-}; fi
  case $list in
    '') echo 'scontrol (Nuri): no node list given and SLURM_JOB_NODELIST is not set' >&2; exit 1 ;;
    *[[]*) printf 'scontrol (Nuri): %s: bracketed host ranges are not expanded; Nuri node lists (SLURM_JOB_NODELIST) are comma-separated names\\n' "$list" >&2; exit 1 ;;
  esac
  set -f
  IFS=,
  for h in $list; do
    if [ -n "$h" ]; then printf '%s\\n' "$h"; fi
  done
  exit 0
fi
echo "scontrol (Nuri): only 'scontrol show hostnames [list]' is provided in a Nuri job" >&2
exit 1
`;

export const SLURM_SHIMS: Readonly<Record<string, string>> = { srun: SRUN, scontrol: SCONTROL };

/** Where the shims are for an agent of this work directory (appended to every job's PATH). */
export function compatBinDir(workDir: string): string {
  return join(workDir, 'compat', 'bin');
}

/** PATH of a job: its own (or the default), with the shims' directory last, once. */
export function withCompatPath(path: string, bin: string): string {
  const parts = path.split(':');
  if (parts.includes(bin)) return path;
  return path ? `${path}:${bin}` : bin;
}

/**
 * Writes the shims: `<workDir>/compat` and `compat/bin` the agent's (0755, refused when a
 * link or someone else's), each shim a regular file of the agent's, 0555, rewritten (a new
 * file renamed over, never written through a link) when it is not exactly that. Returns the
 * directory.
 */
export function installSlurmCompat(workDir: string): string {
  const bin = compatBinDir(workDir);
  agentDir(join(workDir, 'compat'), 0o755);
  agentDir(bin, 0o755);
  for (const [name, text] of Object.entries(SLURM_SHIMS)) writeShim(join(bin, name), Buffer.from(text, 'utf8'));
  return bin;
}

const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = constants;

function writeShim(path: string, want: Buffer): void {
  if (isExactly(path, want)) return;
  const tmp = `${path}.${process.pid}.new`;
  try {
    unlinkSync(tmp);
  } catch {
    /* none left by an earlier run */
  }
  const fd = openSync(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
  try {
    for (let off = 0; off < want.length; ) off += writeSync(fd, want, off);
    fchmodSync(fd, 0o555);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

function isExactly(path: string, want: Buffer): boolean {
  let fd: number;
  try {
    fd = openSync(path, O_RDONLY | O_NOFOLLOW);
  } catch {
    return false; // missing, or a link (ELOOP): written anew
  }
  try {
    const st = fstatSync(fd);
    const me = process.getuid?.() ?? st.uid;
    return st.isFile() && st.uid === me && (st.mode & 0o7777) === 0o555 && st.size === want.length && readFileSync(fd).equals(want);
  } finally {
    closeSync(fd);
  }
}
