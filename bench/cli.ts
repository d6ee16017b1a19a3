/**
 * npm run bench:cli — the nuri CLI's own start cost: the median wall time of 20 runs each of
 * `nuri jobs` and `nuri submit` (against a demo server this starts itself, embedded PGlite in
 * memory, loopback), next to `node -e ''` on the same machine (the floor no Node program goes
 * under) and `nuri --version` (no request). Runs are interleaved so load on the machine hits
 * every command alike. BENCH_RUNS changes the count.
 */
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { request } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { percentile } from './support';

const RUNS = Number(process.env.BENCH_RUNS ?? 20);
const PORT = 19000 + (process.pid % 1000);
const CLI = resolve(__dirname, '../apps/cli/src/main.js');

async function main() {
  const work = mkdtempSync(join(tmpdir(), 'nuri-bench-cli-'));
  let server: ChildProcess | undefined;
  try {
    server = spawn(process.execPath, [resolve(__dirname, '../apps/server/src/main.js')], {
      env: { ...process.env, PORT: String(PORT), HOST: '127.0.0.1', NURI_DATA_DIR: 'memory://', NURI_DEMO_NODES: '2', NURI_AGENT_WORK_DIR: work, NURI_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    const token = await new Promise<string>((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`server not ready in 60 s:\n${out}`)), 60_000);
      server!.stdout!.on('data', (d) => {
        out += d;
        const m = /Researcher token \([^)]*\): (\S+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          ok(m[1]!);
        }
      });
      server!.once('exit', (c) => fail(new Error(`server exited with ${c}:\n${out}`)));
    });
    const env = { PATH: process.env.PATH, NURI_URL: `http://127.0.0.1:${PORT}`, NURI_TOKEN: token };
    const commands: [string, string[]][] = [
      ["node -e ''", ['-e', '']],
      ['nuri --version', [CLI, '--version']],
      ['nuri jobs', [CLI, 'jobs']],
      ['nuri submit', [CLI, 'submit', '-G', '1', '-p', 'h100', '-t', '1', '-J', 'bench-cli', '--', 'true']],
    ];
    const times = new Map<string, number[]>(commands.map(([name]) => [name, []]));
    const once = (args: string[]) => {
      const t0 = process.hrtime.bigint();
      const r = spawnSync(process.execPath, args, { env, encoding: 'utf8' });
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}: ${r.stderr}`);
      return ms;
    };
    // The server's own answer to the same requests from this process (a new connection each, as
    // the CLI makes), so what is left of a CLI run above the floor is the CLI's own cost.
    const answer = (method: string, path: string, body?: object) =>
      new Promise<number>((done, fail) => {
        const t0 = process.hrtime.bigint();
        const payload = body && JSON.stringify(body);
        const req = request(`${env.NURI_URL}${path}`, { method, agent: false, headers: { authorization: `Bearer ${token}`, ...(payload ? { 'content-type': 'application/json' } : {}) } }, (res) => {
          res.resume();
          res.on('end', () => (res.statusCode! < 300 ? done(Number(process.hrtime.bigint() - t0) / 1e6) : fail(new Error(`${path}: ${res.statusCode}`))));
        });
        req.on('error', fail);
        req.end(payload);
      });
    const answers: [string, () => Promise<number>][] = [
      ['GET /v1/jobs + /v1/me', async () => Math.max(...(await Promise.all([answer('GET', '/v1/jobs?state=pending%2Crunning'), answer('GET', '/v1/me')])))],
      ['POST /v1/jobs', () => answer('POST', '/v1/jobs', { name: 'bench-cli', gpus: 1, gpuType: 'h100', timeLimitSeconds: 60, command: ['true'] })],
    ];
    for (const [name] of answers) times.set(name, []);
    for (const [, args] of commands) once(args); // warm the file cache
    // A submitted job starts and ends right away on the demo; a pause after each submit keeps
    // that work of the server's out of the next measurement.
    const settle = () => new Promise((r) => setTimeout(r, 300));
    for (let i = 0; i < RUNS; i++) {
      for (const [name, args] of commands) {
        times.get(name)!.push(once(args));
        if (name === 'nuri submit') await settle();
      }
      for (const [name, f] of answers) {
        times.get(name)!.push(await f());
        if (name === 'POST /v1/jobs') await settle();
      }
    }
    const floor = percentile(times.get("node -e ''")!, 50);
    console.log(`nuri CLI start cost, ${RUNS} runs each (median, p90), Node ${process.version}, ${cpus().length} CPUs, load average ${loadavg()[0]!.toFixed(1)}:`);
    for (const name of [...commands.map(([n]) => n), ...answers.map(([n]) => n)]) {
      const xs = times.get(name)!;
      const med = percentile(xs, 50);
      const above = name.startsWith('node') ? 'the floor' : name.startsWith('nuri') ? `${(med - floor).toFixed(0)} ms above the floor` : "the server's answer alone, from this process";
      console.log(`  ${name.padEnd(22)} ${med.toFixed(0).padStart(5)} ms  p90 ${percentile(xs, 90).toFixed(0).padStart(5)} ms  ${above}`);
    }
  } finally {
    server?.kill('SIGINT');
    await new Promise((r) => (server && server.exitCode === null ? server.once('exit', r) : r(undefined)));
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
