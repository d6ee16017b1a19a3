/**
 * What the deploy tests check the image, compose file, manifests and units against: the
 * settings the server and the agent actually accept (their config schemas), and the repo's
 * files. No container engine or cluster runs here, so everything is checked statically.
 */
import { parseServerConfig, ServerConfigSchema, type ServerConfig } from '@nuri/config';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import YAML from 'yaml';
import { AgentConfig, loadConfig } from '../../apps/agent/src/config';

export const ROOT = resolve(__dirname, '../..');
export const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8');

/** Every document of a YAML file (anchors and `<<` merges resolved, as compose and kubectl do). */
export function yamlDocs(path: string): unknown[] {
  return YAML.parseAllDocuments(read(path), { merge: true })
    .map((d) => {
      if (d.errors.length) throw new Error(`${path}: ${d.errors.map((e) => e.message).join('; ')}`);
      return d.toJS({ maxAliasCount: 1000 }) as unknown;
    })
    .filter((d) => d !== null && d !== undefined);
}

/** The environment variables the server reads: the keys of its config schema's object. */
export function serverEnvNames(): Set<string> {
  let s: any = ServerConfigSchema;
  while (s && !s.shape) s = s.in ?? s._zod?.def?.in ?? s._zod?.def?.innerType ?? s._def?.schema;
  if (!s?.shape) throw new Error('ServerConfigSchema: no object shape found');
  return new Set(Object.keys(s.shape as object));
}

const kebab = (k: string) => k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
/** The agent's environment variables (NURI_<KEY>) and flags (--<key>), from its schema. */
export function agentNames(): { env: Set<string>; flags: Set<string> } {
  const keys = Object.keys(AgentConfig.shape);
  return { env: new Set(keys.map((k) => `NURI_${kebab(k).replace(/-/g, '_').toUpperCase()}`)), flags: new Set(keys.map((k) => `--${kebab(k)}`)) };
}

/** The server's parse of an environment, or the error naming what is wrong. */
export function serverConfig(env: Record<string, string>): ServerConfig {
  return parseServerConfig(env);
}

/** The agent's parse of argv and an environment (flags win), as its main() does. */
export function agentConfig(argv: string[], env: Record<string, string>): AgentConfig {
  return loadConfig(argv, env);
}

/** `dist/apps/x/src/main.js` is what `npm run build` (swc) writes from `apps/x/src/main.ts`. */
export function sourceOfBuilt(path: string): string {
  const m = /^dist\/(.+)\.js$/.exec(path);
  if (!m) throw new Error(`${path} is not a build output under dist/`);
  return `${m[1]}.ts`;
}

/** `${VAR:-default}` / `${VAR}` as compose substitutes them, from `vars` (unset: the default, else ''). */
export function composeSubstitute(value: string, vars: Record<string, string> = {}): string {
  return value.replace(/\$\{(\w+)(?::?-([^}]*))?\}/g, (_, name: string, def?: string) => vars[name] ?? def ?? '');
}

/** `$(VAR)` as Kubernetes expands it in env values and args, from the variables defined before. */
export function kubeExpand(value: string, vars: Record<string, string>): string {
  return value.replace(/\$\((\w+)\)/g, (whole, name: string) => vars[name] ?? whole);
}

/** What GET paths the server answers without a token (probes must use one of these). */
export const PUBLIC_PROBE_PATHS = ['/healthz'];
