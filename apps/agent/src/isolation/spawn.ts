import { existsSync, statSync } from 'node:fs';
import { delimiter, isAbsolute, join, resolve } from 'node:path';

/**
 * Starting a job inside its cgroup before it can run anything: the agent spawns a tiny
 * `/bin/sh` that blocks on `read` (with an empty environment, so nothing of the job's —
 * BASH_ENV, exported functions, SHELLOPTS/PS4 — can make that shell run code), writes the
 * shell's pid into the job's cgroup, then releases it with a newline on its stdin. Only
 * then does the shell `exec` `env -i NAME=VALUE… -- argv…`. The job's argv and environment
 * are positional parameters, never part of the script, so nothing the job sent is parsed
 * as shell code. If the agent dies before releasing it, `read` sees EOF and the shell exits.
 */
export const GATE_SCRIPT = 'read -r _ || exit 125; exec "$@" </dev/null';

const SHELLS = ['/bin/sh', '/usr/bin/sh'];
const ENVS = ['/usr/bin/env', '/bin/env'];

export interface GateTools {
  sh: string;
  env: string;
}

/** The shell and `env` binaries the gate needs, or undefined when either is missing. */
export function gateTools(): GateTools | undefined {
  const sh = SHELLS.find((p) => existsSync(p));
  const env = ENVS.find((p) => existsSync(p));
  return sh && env ? { sh, env } : undefined;
}

/** argv of the gate for a job's command and environment (spawn `tools.sh` with it). */
export function gateArgs(tools: GateTools, command: string[], env: Record<string, string>): string[] {
  const assignments = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  // env(1) takes a first operand with '=' for one more assignment: such a command goes
  // through one more `exec "$@"` of a shell, which then already runs as the job.
  const cmd = command[0]!.includes('=') ? [tools.sh, '-c', 'exec "$@"', 'nuri-job', ...command] : command;
  return ['-c', GATE_SCRIPT, 'nuri-job', tools.env, '-i', '--', ...assignments, ...cmd];
}

/**
 * What execvp would run for `cmd` with this PATH and cwd, or an errno-style reason why it
 * cannot: the gate's exec happens after `started`, so the agent checks first that the
 * command exists, to report a missing binary as `spawn_failed` as a direct spawn does.
 */
export function resolveCommand(cmd: string, path: string | undefined, cwd: string): { path: string } | { error: 'ENOENT' | 'EACCES' } {
  const check = (p: string): 'ok' | 'ENOENT' | 'EACCES' => {
    try {
      const st = statSync(p);
      if (!st.isFile()) return 'EACCES';
      return st.mode & 0o111 ? 'ok' : 'EACCES';
    } catch {
      return 'ENOENT';
    }
  };
  if (cmd.includes('/')) {
    const p = isAbsolute(cmd) ? cmd : resolve(cwd, cmd);
    const r = check(p);
    return r === 'ok' ? { path: p } : { error: r };
  }
  let denied = false;
  for (const dir of (path ?? '').split(delimiter)) {
    const p = join(dir ? resolve(cwd, dir) : cwd, cmd);
    const r = check(p);
    if (r === 'ok') return { path: p };
    if (r === 'EACCES') denied = true;
  }
  return { error: denied ? 'EACCES' : 'ENOENT' };
}
