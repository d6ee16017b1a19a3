import { resolve } from 'node:path';
import swc from 'unplugin-swc';
import { defineConfig } from 'vitest/config';

const lib = (name: string) => resolve(import.meta.dirname, 'libs', name, 'src');

export default defineConfig({
  // Nest's dependency injection needs decorator metadata, which only swc emits here.
  plugins: [swc.vite({ module: { type: 'es6' } })],
  resolve: {
    alias: {
      '@nuri/contracts': lib('contracts'),
      '@nuri/db': lib('db'),
      '@nuri/scheduling': lib('scheduling'),
      '@nuri/metrics': lib('metrics'),
      '@nuri/config': lib('config'),
      // The agent's public entry, for the demo center that runs the production agent in-process.
      '@nuri/agent': resolve(import.meta.dirname, 'apps', 'agent', 'src'),
    },
  },
  test: {
    include: ['apps/**/*.spec.ts', 'libs/**/*.spec.ts', 'test/**/*.spec.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // A throwaway PostgreSQL when none answers at DATABASE_URL (test/support/global-postgres.ts).
    globalSetup: ['test/support/global-postgres.ts'],
  },
});
