import { Logger } from '@nestjs/common';
import { ConfigError, parseServerConfig } from '@nuri/config';
import { startServer } from './bootstrap';

/** The start-up banner and fatal errors: plain lines, or JSON records with NURI_LOG_FORMAT=json. */
const json = process.env.NURI_LOG_FORMAT === 'json';
// The app's logger (NuriLogger, set by startServer) writes the JSON records.
const say = (line: string) => (json ? new Logger('Nuri').log(line.trim()) : console.log(line));

async function main() {
  const started = Date.now();
  const config = parseServerConfig(process.env);
  const server = await startServer(config);
  const roles = [...config.roles].join(', ');
  const db = config.databaseUrl ? 'PostgreSQL' : `embedded PostgreSQL in ${config.dataDir}`;
  say(`\nNuri is ready in ${Date.now() - started} ms: roles ${roles}; ${db}`);
  say(`  API:     ${server.url}/v1   (OpenAPI: ${server.url}/v1/openapi.json, metrics: ${server.url}/metrics)`);
  if (server.gateway) say(`  Agents:  ${server.url.replace(/^http/, 'ws')}/agent`);
  if (server.demo) {
    const d = server.demo;
    say(`  Demo:    ${d.agents.length} simulated nodes; tenants naver, kakao, lg-ai, skt, kt`);
    say(`  Researcher token (${d.researcher}): ${d.researcherToken}`);
    say(`  Operator token:  ${d.operatorToken}`);
    say(`\nSubmit a job:\n  curl -s -X POST ${server.url}/v1/jobs -H 'Authorization: Bearer ${d.researcherToken}' \\`);
    say(`    -H 'Content-Type: application/json' -d '{"name":"hello","gpus":1,"gpuType":"h100","timeLimitSeconds":60,"command":["sh","-c","echo hello from $CUDA_VISIBLE_DEVICES; sleep 2"]}'`);
    say(`Then: curl -s ${server.url}/v1/jobs/<id> -H 'Authorization: Bearer ${d.researcherToken}'`);
    say(`Or with the CLI: NURI_URL=${server.url} NURI_TOKEN=${d.researcherToken} npm run -s cli -- jobs\n`);
  }
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await server.close();
    process.exit(0);
  };
  // A failed shutdown still ends the process, saying why, with a failure code.
  const stopOrFail = () =>
    void stop().catch((e: Error) => {
      console.error(`shutdown failed: ${e.message}`);
      process.exit(1);
    });
  process.once('SIGINT', stopOrFail);
  process.once('SIGTERM', stopOrFail);
}

main().catch((e) => {
  const message = e instanceof ConfigError ? e.message : e instanceof Error ? (e.stack ?? e.message) : String(e);
  if (json) process.stderr.write(`${JSON.stringify({ level: 'fatal', pid: process.pid, timestamp: Date.now(), message, context: 'Nuri' })}\n`);
  else console.error(message);
  process.exit(1);
});
