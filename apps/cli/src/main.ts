#!/usr/bin/env node
import { parseArgs, UsageError } from './args';
import { ApiError, NuriClient } from './client';
import { run, USAGE } from './commands';

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === 'help' || command === '--help' || command === '-h') {
    console.log(USAGE);
    return command ? 0 : 2;
  }
  const token = process.env.NURI_TOKEN;
  if (!token) {
    console.error('nuri: set NURI_TOKEN to your API token (the demo prints one at start)');
    return 2;
  }
  const client = new NuriClient(process.env.NURI_URL ?? 'http://127.0.0.1:8080', token);
  try {
    await run(client, command, parseArgs(rest, ['json', 'no-requeue']), (l) => console.log(l));
    return 0;
  } catch (e) {
    if (e instanceof UsageError) console.error(`nuri: ${e.message}\n\n${USAGE}`);
    else if (e instanceof ApiError) {
      console.error(`nuri: ${e.message} (HTTP ${e.status})`);
      for (const i of e.body.issues ?? []) console.error(`  ${i.field}: ${i.rule}`);
    } else console.error(`nuri: ${(e as Error).message}`);
    return e instanceof UsageError ? 2 : 1;
  }
}

main(process.argv.slice(2)).then((code) => process.exit(code));
