/**
 * Prometheus text exposition format (version 0.0.4) helpers for the hand-rendered
 * fleet block. prom-client renders the small metrics; the per-GPU families are
 * written here directly because 30,000 GPUs × ~15 families is far too many
 * label-set objects to build on every scrape.
 */

/** Escapes a label value: backslash, double quote and line feed. */
export function escapeLabelValue(value: string): string {
  if (!/[\\"\n]/.test(value)) return value;
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** Escapes HELP text: backslash and line feed. */
export function escapeHelp(help: string): string {
  return help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** A sample value as Prometheus writes it. */
export function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

/** `a="x",b="y"` from ordered pairs (values escaped here). */
export function labelPairs(pairs: ReadonlyArray<readonly [string, string]>): string {
  // join() yields a flat string (not a rope), which matters for 30,000 cached label sets.
  return pairs.map(([name, value]) => `${name}="${escapeLabelValue(value)}"`).join(',');
}

export function familyHeader(name: string, help: string, type: string): string {
  return `# HELP ${name} ${escapeHelp(help)}\n# TYPE ${name} ${type}\n`;
}

/**
 * Writes exposition text straight into one Buffer, so a 30,000-GPU scrape builds no
 * per-line strings: names and values are ASCII, label strings are written as UTF-8.
 */
export class ExpositionWriter {
  private buf: Buffer;
  private pos = 0;

  constructor(capacity = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(Math.max(1024, capacity));
  }

  /** Makes room for at least `bytes` more without reallocating. */
  reserve(bytes: number): void {
    if (this.pos + bytes <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.pos + bytes, Math.ceil(this.buf.length * 1.25)));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  /** Any text (UTF-8). */
  text(s: string): void {
    this.reserve(s.length * 3);
    this.pos += this.buf.write(s, this.pos, 'utf8');
  }

  /** ASCII-only text (names, numbers, punctuation). */
  ascii(s: string): void {
    this.reserve(s.length);
    this.pos += this.buf.write(s, this.pos, 'latin1');
  }

  /** `prefix` is `name{` (ASCII), `labels` the escaped label pairs, then `} value\n`. */
  sample(prefix: string, labels: string, labelBytes: number, value: number): void {
    this.reserve(prefix.length + labelBytes + 40);
    const b = this.buf;
    let p = this.pos;
    p += b.write(prefix, p, 'latin1');
    p += labelBytes === labels.length ? b.write(labels, p, 'latin1') : b.write(labels, p, 'utf8');
    p += b.write(`} ${formatValue(value)}\n`, p, 'latin1');
    this.pos = p;
  }

  get length(): number {
    return this.pos;
  }

  /** The bytes written (a view, not a copy). */
  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}
