import { ConfigError, parseServerConfig } from '@nuri/config';
import { startServer } from './bootstrap';

async function main() {
  const started = Date.now();
  const config = parseServerConfig(process.env);
  const server = await startServer(config);
  console.log(`nuri: ready in ${Date.now() - started} ms, API at ${server.url}`);
  const stop = async () => {
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
