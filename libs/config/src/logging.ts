/**
 * What the server and the agent share about their log lines: NURI_LOG_FORMAT=json writes one
 * JSON object a line with the job and the node as fields, found in the message text (every
 * log line names them the same way: `job <uuid>`, `node <name>`), so a collector can filter
 * on them without each call site changing.
 */
export type LogFormat = 'text' | 'json';

const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
const JOB = new RegExp(`\\bjob (${UUID})\\b`, 'i');
const ANY_UUID = new RegExp(`\\b(${UUID})\\b`, 'i');
// Node names are the agent's: letters, digits, dot, dash, underscore (not a trailing dot or colon).
const NODE = /\bnode ([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?)\b/;
/** Words that follow "node" in prose, not names ("node is down", "node down"). */
const NOT_NAMES = new Set(['is', 'was', 'has', 'down', 'up', 'not', 'name', 'names', 'token', 'state', 'the', 'a', 'an']);

/** The job (`job <uuid>`, else the first uuid) and node (`node <name>`) a message names, if any. */
export function logFields(message: string): { job?: string; node?: string } {
  const out: { job?: string; node?: string } = {};
  const job = JOB.exec(message) ?? ANY_UUID.exec(message);
  if (job?.[1]) out.job = job[1].toLowerCase();
  const node = NODE.exec(message);
  if (node?.[1] && !NOT_NAMES.has(node[1].toLowerCase())) out.node = node[1];
  return out;
}

/** Whether to colour text logs: only on a terminal, and never with NO_COLOR set. */
export function colorsWanted(stream: { isTTY?: boolean } = process.stdout, env: Record<string, string | undefined> = process.env): boolean {
  return stream.isTTY === true && !env.NO_COLOR;
}
