import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCli } from './testing';

/** The built `nuri` as a user runs it: a child process, its exit code, stdout and stderr. */
describe('the built nuri binary', () => {
  let cli: ReturnType<typeof buildCli>;
  beforeAll(() => {
    cli = buildCli();
  });
  afterAll(() => cli?.remove());

  const nuri = (argv: string[], env: Record<string, string> = {}) =>
    new Promise<{ code: number | null; out: string; err: string }>((done) => {
      execFile(process.execPath, [cli.main, ...argv], { env: { PATH: process.env.PATH, ...env }, timeout: 20_000 }, (e, out, err) =>
        done({ code: e ? ((e as { code?: number }).code ?? null) : 0, out, err }),
      );
    });

  it('prints its version and help on every command, exit 0', async () => {
    const version = (JSON.parse(readFileSync(resolve(__dirname, '../../../package.json'), 'utf8')) as { version: string }).version;
    expect(await nuri(['--version'])).toEqual({ code: 0, out: `${version}\n`, err: '' });
    const help = await nuri(['--help']);
    expect(help.code).toBe(0);
    for (const c of ['submit', 'jobs', 'show', 'logs', 'cancel', 'nodes', 'whoami', 'users', 'completion']) expect(help.out).toMatch(new RegExp(`^  ${c} `, 'm'));
    for (const c of ['submit', 'jobs', 'show', 'logs', 'cancel', 'nodes', 'whoami', 'users', 'completion']) {
      const h = await nuri([c, '-h']);
      expect({ c, code: h.code, usage: h.out.split('\n')[0] }).toEqual({ c, code: 0, usage: expect.stringMatching(new RegExp(`^Usage: nuri ${c} `)) });
    }
    const submitHelp = await nuri(['help', 'submit']);
    expect(submitHelp.code).toBe(0);
    expect(submitHelp.out).toContain('-t, --time <time>');
    expect(submitHelp.out).toContain('#SBATCH');
  });

  it('exits 2 on a usage error and 1 when the server cannot be reached, naming the URL', async () => {
    const bare = await nuri([]);
    expect(bare.code).toBe(2);
    expect(bare.err).toMatch(/^Usage: nuri /);
    expect(await nuri(['jobs', '--frobnicate'])).toMatchObject({ code: 2, err: "nuri: unknown option '--frobnicate' (see nuri jobs --help)\n" });
    expect(await nuri(['jobs'])).toMatchObject({ code: 2, err: expect.stringMatching(/^nuri: set NURI_TOKEN/) });
    // A port nothing listens on: taken, then released.
    const port = await new Promise<number>((done) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => done(p));
      });
    });
    expect(await nuri(['jobs'], { NURI_URL: 'nuri.example:8080', NURI_TOKEN: 'x' })).toMatchObject({
      code: 2,
      err: 'nuri: NURI_URL: "nuri.example:8080" is not an http:// or https:// URL (e.g. http://nuri.example:8080)\n',
    });
    const r = await nuri(['jobs'], { NURI_URL: `http://127.0.0.1:${port}/v1/`, NURI_TOKEN: 'x' });
    expect(r).toEqual({
      code: 1,
      out: '',
      err: `nuri: cannot reach the Nuri server at http://127.0.0.1:${port} (connect ECONNREFUSED 127.0.0.1:${port}); set NURI_URL\n`,
    });
  });

  it('submits and lists without loading a schema library (its start cost), and names the server it could not reach', async () => {
    // A preload that says at exit which of zod's files were loaded.
    const dir = mkdtempSync(join(tmpdir(), 'nuri-bin-'));
    const preload = join(dir, 'loaded.js');
    writeFileSync(preload, "process.on('exit', () => { if (Object.keys(require.cache).some((k) => k.includes('/node_modules/zod/'))) process.stderr.write('zod loaded\\n'); });");
    writeFileSync(join(dir, 'job.sh'), '#!/bin/sh\n#SBATCH -t 10\n#SBATCH -G 1\necho hi\n');
    try {
      const env = { NURI_URL: 'http://127.0.0.1:9/', NURI_TOKEN: 'x' };
      for (const argv of [['submit', join(dir, 'job.sh')], ['submit', '-G', '1', '-t', '5', '--', 'true'], ['submit', '--array', '0-7%2', '-d', 'afterok:abcdef12', '-G', '1', '-t', '5', '--', 'true'], ['jobs'], ['logs', 'abcdef12']]) {
        const r = await new Promise<{ code: number | null; err: string }>((done) =>
          execFile(process.execPath, ['-r', preload, cli.main, ...argv], { env: { PATH: process.env.PATH, ...env } }, (e, _out, err) => done({ code: e ? ((e as { code?: number }).code ?? null) : 0, err })),
        );
        expect({ argv, ...r }).toEqual({ argv, code: 1, err: expect.stringMatching(/^nuri: cannot reach the Nuri server at http:\/\/127\.0\.0\.1:9 /) });
        expect(r.err).not.toContain('zod loaded');
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('prints a bash completion script bash accepts, which completes commands, flags and choices', async () => {
    const script = (await nuri(['completion', 'bash'])).out;
    expect(spawnSync('bash', ['-n'], { input: script }).status).toBe(0);
    const complete = (line: string) => {
      const words = line.split(' ');
      const program = `${script}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _nuri; printf '%s\\n' "\${COMPREPLY[@]}"`;
      const r = spawnSync('bash', ['-c', program], { encoding: 'utf8' });
      expect(r.stderr).toBe('');
      return r.stdout.trim().split('\n').filter(Boolean);
    };
    expect(complete('nuri su')).toEqual(['submit']);
    expect(complete('nuri c')).toEqual(['cancel', 'completion']);
    expect(complete('nuri jobs --st')).toEqual(['--state']);
    expect(complete('nuri submit --gpus-')).toEqual(['--gpus-per-node']);
    expect(complete('nuri users d')).toEqual(['disable']);
    expect(complete('nuri completion ')).toEqual(['bash', 'zsh']);
    expect(complete('nuri logs -')).toEqual(expect.arrayContaining(['-f', '--follow', '--rank', '--tail', '-h', '--help']));
  });

  it('prints a zsh completion script naming every command and its flags', async () => {
    const r = await nuri(['completion', 'zsh']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^#compdef nuri\n/);
    expect(r.out).toContain("'submit:submit a batch script or a command'");
    expect(r.out).toMatch(/^ {4}jobs\) flags=\(-a --all -t --state .*\); subwords=\(\) ;;$/m);
    expect(r.out).toMatch(/compdef _nuri nuri\n$/);
  });
});
