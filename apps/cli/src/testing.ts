/** For specs: the CLI built as `npm run build` builds it (swc, CommonJS), in a folder of its own under dist/. */
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(__dirname, '../../..');

/** Compiles the CLI and the contracts it loads lazily; returns the path of main.js and a function that removes the build. */
export function buildCli(): { main: string; remove: () => void } {
  const out = join(root, 'dist', `.cli-test-${process.pid}`);
  execFileSync(join(root, 'node_modules/.bin/swc'), ['apps/cli/src', 'libs/contracts/src', '-d', out, '--ignore', '**/*.spec.ts', '-q'], { cwd: root });
  return { main: join(out, 'apps/cli/src/main.js'), remove: () => rmSync(out, { recursive: true, force: true }) };
}
