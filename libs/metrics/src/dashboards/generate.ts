/**
 * Writes grafana/dashboards/*.json from the TypeScript definitions.
 *   npm run grafana:generate            write the files
 *   npm run grafana:generate -- --check exit 1 if the committed files differ
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { dashboardFileText, generateDashboards } from './dashboards';

function repoRoot(): string {
  let dir = __dirname;
  while (!existsSync(join(dir, 'package.json'))) {
    const up = resolve(dir, '..');
    if (up === dir) throw new Error('package.json not found above ' + __dirname);
    dir = up;
  }
  return dir;
}

function main(): void {
  const out = join(repoRoot(), 'grafana', 'dashboards');
  const check = process.argv.includes('--check');
  const files = generateDashboards();
  const stale: string[] = [];
  mkdirSync(out, { recursive: true });
  for (const [name, json] of files) {
    const path = join(out, name);
    const text = dashboardFileText(json);
    const current = existsSync(path) ? readFileSync(path, 'utf8') : undefined;
    if (current === text) continue;
    stale.push(name);
    if (!check) writeFileSync(path, text);
  }
  for (const name of readdirSync(out).filter((f) => f.endsWith('.json') && !files.has(f))) {
    stale.push(`${name} (not generated)`);
    if (!check) unlinkSync(join(out, name));
  }
  if (check && stale.length) {
    console.error(`grafana/dashboards is out of date: ${stale.join(', ')}; run npm run grafana:generate`);
    process.exitCode = 1;
    return;
  }
  console.log(`${check ? 'checked' : 'wrote'} ${files.size} dashboards in ${out}${stale.length && !check ? ` (updated: ${stale.join(', ')})` : ''}`);
}

main();
