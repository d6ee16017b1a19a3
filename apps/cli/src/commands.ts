import type { JobView, NodeView, UserView } from '@nuri/contracts';
import { checkFlags, one, ParsedArgs, UsageError } from './args';
import type { NuriClient } from './client';

export const USAGE = `nuri — the Nuri GPU scheduler from a terminal

Usage:
  nuri submit --name NAME --gpus N [--type h100|h800|any] --time DURATION
              [--priority low|normal|high] [--env KEY=VALUE]... [--workdir DIR] [--no-requeue] -- COMMAND [ARGS...]
  nuri jobs [--state STATE] [--user USER] [--limit N]
  nuri show JOB_ID
  nuri cancel JOB_ID
  nuri nodes
  nuri whoami
  nuri users [--tenant TENANT]                 (tenant admins and operators)
  nuri users disable USER | enable USER        (every token of a disabled user stops at once)

Every command takes --json to print the API's JSON instead of text.
Connection: NURI_URL (default http://127.0.0.1:8080) and NURI_TOKEN.
DURATION: seconds, or with a unit: 90s, 30m, 4h, 2d.`;

type Out = (line: string) => void;

export function parseDuration(s: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(s.trim());
  if (!m) throw new UsageError(`--time: "${s}" is not a duration like 3600, 30m, 4h or 2d`);
  return Number(m[1]) * { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
}

export function humanDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return [d && `${d}d`, h && `${h}h`, m && `${m}m`].filter(Boolean).join(' ');
}

export function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!))).join('  ').trimEnd());
}

const when = (iso: string | null, now: Date) => {
  if (!iso) return '-';
  const dt = (new Date(iso).getTime() - now.getTime()) / 1000;
  return dt >= 0 ? `in ${humanDuration(dt)}` : `${humanDuration(-dt)} ago`;
};

export async function run(client: NuriClient, command: string, args: ParsedArgs, out: Out, now = new Date()): Promise<void> {
  const json = args.flags.has('json');
  switch (command) {
    case 'submit': {
      checkFlags(args, ['name', 'gpus', 'type', 'time', 'priority', 'env', 'workdir', 'no-requeue', 'json']);
      if (!args.rest.length) throw new UsageError('give the command after --, e.g. nuri submit ... -- python train.py');
      const env: Record<string, string> = {};
      for (const kv of args.flags.get('env') ?? []) {
        const i = kv.indexOf('=');
        if (i < 1) throw new UsageError(`--env: "${kv}" is not KEY=VALUE`);
        env[kv.slice(0, i)] = kv.slice(i + 1);
      }
      const time = one(args, 'time');
      if (!time) throw new UsageError('--time is required (the job is stopped when it runs out)');
      const body = {
        name: one(args, 'name') ?? args.rest[0]!.split('/').pop()!,
        gpus: Number(one(args, 'gpus') ?? NaN),
        gpuType: one(args, 'type') ?? 'any',
        timeLimitSeconds: parseDuration(time),
        command: args.rest,
        env,
        ...(one(args, 'workdir') ? { workingDir: one(args, 'workdir') } : {}),
        ...(one(args, 'priority') ? { priority: one(args, 'priority') } : {}),
        ...(args.flags.has('no-requeue') ? { requeue: false } : {}),
      };
      const job = await client.call<JobView>('POST', '/v1/jobs', body);
      if (json) out(JSON.stringify(job, null, 2));
      else out(`submitted ${job.id} (${job.name}): ${job.state}`);
      return;
    }
    case 'jobs': {
      checkFlags(args, ['state', 'user', 'limit', 'json']);
      const q = new URLSearchParams();
      for (const k of ['state', 'user', 'limit']) if (one(args, k)) q.set(k, one(args, k)!);
      const page = await client.call<{ items: JobView[] }>('GET', `/v1/jobs${q.size ? `?${q}` : ''}`);
      if (json) return out(JSON.stringify(page, null, 2));
      const rows = [['ID', 'NAME', 'STATE', 'GPUS', 'TYPE', 'SUBMITTED', 'START / INFO']];
      for (const j of page.items)
        rows.push([
          j.id.slice(0, 8),
          j.name,
          j.state,
          String(j.gpus),
          j.gpuType,
          when(j.submittedAt, now),
          j.state === 'pending'
            ? `#${j.queuePosition ?? '?'} ${j.estimatedStartAt ? when(j.estimatedStartAt, now) : 'no estimate'}`
            : j.exitCode !== null
              ? `exit ${j.exitCode}`
              : j.placement.map((p) => `${p.node}[${p.gpus.join(',')}]`).join(' '),
        ]);
      table(rows).forEach((l) => out(l));
      return;
    }
    case 'show': {
      checkFlags(args, ['json']);
      const id = args.positional[0];
      if (!id) throw new UsageError('nuri show JOB_ID');
      const j = await client.call<JobView>('GET', `/v1/jobs/${encodeURIComponent(id)}`);
      if (json) return out(JSON.stringify(j, null, 2));
      out(`${j.name} (${j.id}) — ${j.tenant}/${j.user}`);
      out(`  state:     ${j.state}${j.reason ? ` — ${j.reason}` : ''}`);
      if (j.state === 'pending') {
        out(`  queue:     position ${j.queuePosition ?? '?'}`);
        // A requeued job waits again from its requeue; say so, or "waiting since" looks wrong.
        out(`  waiting:   since ${when(j.queuedAt, now)}${j.queuedAt !== j.submittedAt ? ' (requeued)' : ''}`);
        out(`  starts:    ${j.estimatedStartAt ? `${when(j.estimatedStartAt, now)} (${j.estimatedStartAt})` : 'no estimate yet'}`);
      }
      out(`  asks for:  ${j.gpus} × ${j.gpuType} GPU, ${j.priority} priority, time limit ${humanDuration(j.timeLimitSeconds)}`);
      out(`  command:   ${JSON.stringify(j.command)}`);
      if (j.placement.length) out(`  placed on: ${j.placement.map((p) => `${p.node} GPUs ${p.gpus.join(',')}`).join('; ')}`);
      if (j.exitCode !== null) out(`  exit code: ${j.exitCode}`);
      out('  history:');
      for (const t of j.transitions) out(`    ${t.at}  ${t.from ?? '-'} → ${t.to}  (${t.reason})`);
      return;
    }
    case 'cancel': {
      checkFlags(args, ['json']);
      const id = args.positional[0];
      if (!id) throw new UsageError('nuri cancel JOB_ID');
      const j = await client.call<JobView>('POST', `/v1/jobs/${encodeURIComponent(id)}/cancel`);
      if (json) return out(JSON.stringify(j, null, 2));
      out(j.state === 'cancelled' ? `cancelled ${j.id}` : `stopping ${j.id} (it is ${j.state}; the agent sends SIGTERM, then SIGKILL after the grace period)`);
      return;
    }
    case 'nodes': {
      checkFlags(args, ['json']);
      const nodes = await client.call<NodeView[]>('GET', '/v1/nodes');
      if (json) return out(JSON.stringify(nodes, null, 2));
      const rows = [['NODE', 'TYPE', 'STATE', 'FREE', 'UNHEALTHY', 'LEAF']];
      for (const n of nodes)
        rows.push([n.name, n.gpuType, n.state, `${n.gpus.filter((g) => g.healthy && !g.job).length}/${n.gpus.length}`, String(n.gpus.filter((g) => !g.healthy).length), n.leafSwitch]);
      table(rows).forEach((l) => out(l));
      return;
    }
    case 'users': {
      const [action, name] = args.positional;
      if (action === 'disable' || action === 'enable') {
        checkFlags(args, ['json']);
        if (!name || args.positional.length > 2) throw new UsageError(`nuri users ${action} USER`);
        const u = await client.call<UserView>('POST', `/v1/users/${encodeURIComponent(name)}/${action}`);
        if (json) return out(JSON.stringify(u, null, 2));
        out(u.disabledAt ? `disabled ${u.name} (since ${u.disabledAt}): every token of theirs is refused` : `enabled ${u.name}: their unexpired, unrevoked tokens work again`);
        return;
      }
      if (action !== undefined) throw new UsageError(`nuri users: unknown action "${action}" (disable, enable, or none to list)`);
      checkFlags(args, ['tenant', 'json']);
      const tenant = one(args, 'tenant');
      const users = await client.call<UserView[]>('GET', `/v1/users${tenant ? `?${new URLSearchParams({ tenant })}` : ''}`);
      if (json) return out(JSON.stringify(users, null, 2));
      const rows = [['USER', 'TENANT', 'ROLE', 'STATUS']];
      for (const u of users) rows.push([u.name, u.tenant ?? '-', u.role, u.disabledAt ? `disabled since ${u.disabledAt}` : 'enabled']);
      table(rows).forEach((l) => out(l));
      return;
    }
    case 'whoami': {
      checkFlags(args, ['json']);
      const me = await client.call<{ user: string; tenant: string | null; role: string }>('GET', '/v1/me');
      if (json) return out(JSON.stringify(me, null, 2));
      out(`${me.user} (${me.role}${me.tenant ? ` in ${me.tenant}` : ''})`);
      return;
    }
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}
