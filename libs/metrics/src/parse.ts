/**
 * A small parser for the Prometheus text format, for tests and end-to-end checks: it
 * reads what `metrics()` renders and rejects what Prometheus would (samples outside their
 * family, a family split in two, a sample without HELP/TYPE).
 */
export interface ParsedSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}
export interface ParsedExposition {
  families: Map<string, { help: string; type: string }>;
  samples: ParsedSample[];
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?/gy;

function familyOf(name: string, families: Map<string, { type: string }>): string | undefined {
  if (families.has(name)) return name;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (name.endsWith(suffix)) {
      const base = name.slice(0, -suffix.length);
      if (families.get(base)?.type === 'histogram') return base;
    }
  }
  return undefined;
}

export function parseExposition(text: string): ParsedExposition {
  const families = new Map<string, { help: string; type: string }>();
  const samples: ParsedSample[] = [];
  const closed = new Set<string>();
  let current: string | undefined;
  let pendingHelp: { name: string; help: string } | undefined;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('# HELP ')) {
      const rest = line.slice(7);
      const sp = rest.indexOf(' ');
      pendingHelp = { name: rest.slice(0, sp), help: rest.slice(sp + 1) };
      continue;
    }
    if (line.startsWith('# TYPE ')) {
      const [name, type] = line.slice(7).split(' ') as [string, string];
      if (families.has(name)) throw new Error(`family ${name} declared twice`);
      if (pendingHelp?.name !== name) throw new Error(`family ${name} has no HELP`);
      if (current) closed.add(current);
      families.set(name, { help: pendingHelp.help, type });
      current = name;
      pendingHelp = undefined;
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`unparsable line: ${line}`);
    const [, name, labelText, valueText] = m as unknown as [string, string, string | undefined, string];
    const family = familyOf(name, families);
    if (!family) throw new Error(`sample ${name} without HELP/TYPE`);
    if (family !== current || closed.has(family)) throw new Error(`sample ${name} outside its family block`);
    const labels: Record<string, string> = {};
    if (labelText) {
      LABEL.lastIndex = 0;
      let lm: RegExpExecArray | null;
      while (LABEL.lastIndex < labelText.length && (lm = LABEL.exec(labelText))) {
        labels[lm[1]!] = lm[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
      }
      if (LABEL.lastIndex !== labelText.length) throw new Error(`bad labels: ${line}`);
    }
    const value = valueText === '+Inf' ? Infinity : valueText === '-Inf' ? -Infinity : Number(valueText);
    samples.push({ name, labels, value });
  }
  return { families, samples };
}

/** Samples of `name` whose labels include all of `match`. */
export function findSamples(p: ParsedExposition, name: string, match: Record<string, string> = {}): ParsedSample[] {
  return p.samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v));
}
