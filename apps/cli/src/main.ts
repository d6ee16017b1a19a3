#!/usr/bin/env node
import { runCli } from './program';

// Ctrl-C while following logs ends the stream and exits 130, without a stack trace.
const interrupted = new AbortController();
process.once('SIGINT', () => interrupted.abort());

// A reader that went away (nuri logs -f | head) ends the command quietly, as with any Unix tool.
process.stdout.on('error', (e: NodeJS.ErrnoException) => process.exit(e.code === 'EPIPE' ? 0 : 1));

runCli(process.argv.slice(2), {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  env: process.env,
  cwd: process.cwd(),
  signal: interrupted.signal,
}).then(
  (code) => {
    process.exitCode = code;
    // Let stdout drain (a pipe may be slow), then go: nothing else should keep the process up.
    process.stdout.write('', () => process.exit(code));
  },
  (e: unknown) => {
    // runCli answers every user error itself: what reaches here is a bug, shown whole.
    process.stderr.write(`nuri: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
