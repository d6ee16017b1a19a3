import { closeSync, constants, fchmodSync, fchownSync, fstatSync, lstatSync, mkdirSync, openSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/**
 * File operations of the agent (root) next to files of jobs (not root), none of which
 * follow a symlink: a job that plants one where the agent is about to write cannot make the
 * agent write, chown or chmod anything else.
 */
const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_APPEND, O_NOFOLLOW, O_DIRECTORY } = constants;

const asRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;

/** Opens a directory without following a symlink at its last component. */
function openDir(path: string): number {
  return openSync(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
}

/**
 * A directory only the agent may write: created if missing, refused when it is a symlink,
 * not a directory or owned by someone else, and given `mode` (group and others never write).
 */
export function agentDir(path: string, mode: number): void {
  try {
    mkdirSync(path, { mode });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  const fd = openDir(path);
  try {
    const st = fstatSync(fd);
    const me = process.getuid?.() ?? st.uid;
    if (st.uid !== me) throw new Error(`${path} belongs to uid ${st.uid}, not the agent's (${me})`);
    fchmodSync(fd, mode & 0o755);
  } finally {
    closeSync(fd);
  }
}

/** The job's own directory (its cwd and HOME): that uid's, mode 0700. */
export function jobDir(path: string, uid: number | undefined, gid: number | undefined): void {
  try {
    mkdirSync(path, { mode: 0o700 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  const fd = openDir(path);
  try {
    if (uid !== undefined && gid !== undefined && asRoot()) fchownSync(fd, uid, gid);
    fchmodSync(fd, 0o700);
  } finally {
    closeSync(fd);
  }
}

/**
 * After the job: its directory goes back to root (0700), so a later job that happens to get
 * the same uid cannot read what this one left. A no-op when the agent is not root.
 */
export function releaseJobDir(path: string): void {
  if (!asRoot()) return;
  let fd: number;
  try {
    fd = openDir(path);
  } catch {
    return;
  }
  try {
    fchownSync(fd, 0, 0);
    fchmodSync(fd, 0o700);
  } finally {
    closeSync(fd);
  }
}

/**
 * A job's batch script in its own directory: whatever an earlier attempt left at that name
 * (a symlink, a hard link, a file) is unlinked, never written through; the new file is
 * created exclusively, owned by the job's uid and made 0500 (read and run by that user only).
 */
export function writeJobScript(path: string, text: string, uid: number | undefined, gid: number | undefined): void {
  try {
    lstatSync(path);
    unlinkSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const fd = openSync(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
  try {
    const data = Buffer.from(text, 'utf8');
    for (let off = 0; off < data.length; ) off += writeSync(fd, data, off);
    if (uid !== undefined && gid !== undefined && asRoot()) fchownSync(fd, uid, gid);
    fchmodSync(fd, 0o500);
  } finally {
    closeSync(fd);
  }
}

/** Opens (creates) a log for appending, never through a symlink, and only a regular file. */
export function openLog(path: string): number {
  const fd = openSync(path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW, 0o600);
  const st = fstatSync(fd);
  if (!st.isFile()) {
    closeSync(fd);
    throw new Error(`${path} is not a regular file`);
  }
  return fd;
}

/**
 * The first directory on the way to `path` that other users cannot pass through (no o+x),
 * or undefined when a job's uid can reach it.
 */
export function blockedAncestor(path: string): string | undefined {
  let dir = resolve(path);
  for (;;) {
    try {
      if ((statSync(dir).mode & 0o001) === 0) return dir;
    } catch {
      /* not made yet: its parent decides */
    }
    const up = dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}
