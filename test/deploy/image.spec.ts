/**
 * The Dockerfile and .dockerignore, checked statically (no container engine here): a
 * multi-stage build with the README's commands, a non-root runtime user, the port, variables
 * and health check the server accepts, and an entry point that is a file the build writes.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { read, ROOT, serverConfig, serverEnvNames, sourceOfBuilt } from './support';

interface Instruction {
  op: string;
  args: string;
  stage: number;
}

/** Instructions in order (continuations joined, comments dropped), each with its stage index. */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let stage = -1;
  const lines = text.replace(/\\\n/g, ' ').split('\n');
  for (const line of lines) {
    const t = line.trim();
    if (!t || t.startsWith('#')) continue;
    const m = /^(\w+)\s+(.*)$/.exec(t);
    if (!m) throw new Error(`Dockerfile: cannot read ${t}`);
    const op = m[1]!.toUpperCase();
    if (op === 'FROM') stage++;
    out.push({ op, args: m[2]!.replace(/\s+/g, ' ').trim(), stage });
  }
  return out;
}

const ins = parseDockerfile(read('Dockerfile'));
const last = Math.max(...ins.map((i) => i.stage));
const final = ins.filter((i) => i.stage === last);
const json = (s: string) => JSON.parse(s) as string[];
/** ENV a=b c=d … of the final stage. */
const finalEnv = Object.fromEntries(final.filter((i) => i.op === 'ENV').flatMap((i) => [...i.args.matchAll(/(\w+)=(\S+)/g)].map((m) => [m[1]!, m[2]!])));

describe('Dockerfile', () => {
  it('is multi-stage: builds with npm ci and the README\'s build, ships only runtime dependencies and dist/', () => {
    expect(last).toBeGreaterThanOrEqual(1);
    const build = ins.filter((i) => i.stage < last);
    expect(build.some((i) => i.op === 'RUN' && /\bnpm ci\b/.test(i.args) && !/omit=dev/.test(i.args))).toBe(true);
    // The README's build command, the one production runs before `node dist/…`.
    expect(read('README.md')).toContain('(`npm run build` first.)');
    expect(build.some((i) => i.op === 'RUN' && /\bnpm run build\b/.test(i.args))).toBe(true);
    expect(build.some((i) => i.op === 'RUN' && /npm ci --omit=dev/.test(i.args))).toBe(true);
    const copies = final.filter((i) => i.op === 'COPY').map((i) => i.args);
    expect(copies).toContain('--from=build /src/dist dist');
    expect(copies.some((c) => /^--from=deps \/src\/node_modules node_modules$/.test(c))).toBe(true);
    // Every file the build stage copies from the context exists, and .dockerignore keeps it.
    const ignored = read('.dockerignore').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    for (const c of build.filter((i) => i.op === 'COPY' && !i.args.startsWith('--from'))) {
      const parts = c.args.split(' ');
      for (const src of parts.slice(0, -1)) {
        expect(existsSync(join(ROOT, src)), `COPY ${src}`).toBe(true);
        expect(ignored, `.dockerignore drops ${src}`).not.toContain(src);
      }
    }
    for (const must of ['node_modules', 'dist', '.git', '.nuri']) expect(ignored).toContain(must);
  });

  it('runs as a dedicated non-root user', () => {
    const user = final.filter((i) => i.op === 'USER').pop()?.args;
    expect(user).toBeDefined();
    const [uid] = user!.split(':');
    expect(Number(uid)).toBeGreaterThan(0);
    expect(final.some((i) => i.op === 'RUN' && new RegExp(`useradd .*--uid ${uid}\\b`).test(i.args))).toBe(true);
  });

  it('its variables, port and health check are what the server accepts and serves', () => {
    const known = serverEnvNames();
    for (const k of Object.keys(finalEnv)) if (k !== 'NODE_ENV' && k !== 'NODE_OPTIONS') expect(known.has(k), `${k} is not a server setting`).toBe(true);
    // Node's options: the heap cap (as npm start and the systemd units), which node accepts.
    expect(finalEnv.NODE_OPTIONS).toBe('--max-old-space-size=768');
    expect(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts.start).toContain(` ${finalEnv.NODE_OPTIONS} `);
    expect(spawnSync(process.execPath, ['-e', '0'], { env: { ...process.env, NODE_OPTIONS: finalEnv.NODE_OPTIONS } }).status).toBe(0);
    const { NODE_ENV: _, NODE_OPTIONS: _o, ...env } = finalEnv;
    const config = serverConfig({ ...env, DATABASE_URL: 'postgres://nuri@db/nuri' });
    expect(config.logFormat).toBe('json');
    expect(final.find((i) => i.op === 'EXPOSE')?.args).toBe(String(config.port));
    // The server's default port, so `docker run -p 8080:8080` works without setting PORT.
    expect(serverConfig({}).port).toBe(config.port);
    const hc = final.find((i) => i.op === 'HEALTHCHECK')?.args ?? '';
    expect(hc).toMatch(/\/healthz/);
    expect(hc).toMatch(/process\.env\.PORT \|\| 8080/);
  });

  it('one image for every role and the agent: node runs the server by default, the agent by argument', () => {
    expect(json(final.find((i) => i.op === 'ENTRYPOINT')!.args)).toEqual(['node']);
    const [cmd] = json(final.find((i) => i.op === 'CMD')!.args);
    expect(cmd).toBe('dist/apps/server/src/main.js');
    expect(existsSync(join(ROOT, sourceOfBuilt(cmd!)))).toBe(true);
    expect(existsSync(join(ROOT, sourceOfBuilt('dist/apps/agent/src/main.js')))).toBe(true);
    // The build writes both: `npm run build` compiles apps/ (swc) into dist/.
    expect(JSON.parse(read('package.json')).scripts.build).toMatch(/^swc apps libs/);
  });
});
