import { ConfigError, parseServerConfig } from '@nuri/config';
import { startServer } from './bootstrap';

async function main() {
  const started = Date.now();
  const config = parseServerConfig(process.env);
  const server = await startServer(config);
  const roles = [...config.roles].join(', ');
  const db = config.databaseUrl ? 'PostgreSQL' : `embedded PostgreSQL in ${config.dataDir}`;
  console.log(`\nNuri is ready in ${Date.now() - started} ms: roles ${roles}; ${db}`);
  console.log(`  API:     ${server.url}/v1   (OpenAPI: ${server.url}/v1/openapi.json, metrics: ${server.url}/metrics)`);
  if (server.gateway) console.log(`  Agents:  ${server.url.replace(/^http/, 'ws')}/agent`);
  if (server.demo) {
    const d = server.demo;
    console.log(`  Demo:    ${d.agents.length} simulated nodes; tenants naver, kakao, lg-ai, skt, kt`);
    console.log(`  Researcher token (${d.researcher}): ${d.researcherToken}`);
    console.log(`  Operator token:  ${d.operatorToken}`);
    console.log(`\nSubmit a job:\n  curl -s -X POST ${server.url}/v1/jobs -H 'Authorization: Bearer ${d.researcherToken}' \\`);
    console.log(`    -H 'Content-Type: application/json' -d '{"name":"hello","gpus":1,"gpuType":"h100","timeLimitSeconds":60,"command":["sh","-c","echo hello from $CUDA_VISIBLE_DEVICES; sleep 2"]}'`);
    console.log(`Then: curl -s ${server.url}/v1/jobs/<id> -H 'Authorization: Bearer ${d.researcherToken}'`);
    console.log(`Or with the CLI: NURI_URL=${server.url} NURI_TOKEN=${d.researcherToken} npm run -s cli -- jobs\n`);
  }
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await server.close();
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((e) => {
  console.error(e instanceof ConfigError ? e.message : e);
  process.exit(1);
});
