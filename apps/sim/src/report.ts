import type { RunOutput } from './main';
export function htmlReport(out: RunOutput): string {
  return `<html><body><pre>${JSON.stringify(out.rows)}</pre></body></html>`;
}
