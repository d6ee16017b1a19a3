import { execFile } from 'node:child_process';
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import type { GpuInventory } from '@nuri/contracts';
import type { GpuFault } from './types';

/**
 * Where kernel-log lines come from:
 * - `{ file }`: a log file tailed from its end at start (e.g. /var/log/kern.log); rotation
 *   or truncation (file shrinks) restarts at 0.
 * - `{ command }`: argv run on every poll (e.g. ['dmesg']); lines already seen are skipped
 *   (bounded memory), so a whole-buffer command works.
 */
export type XidSource = { file: string } | { command: string[] };

export interface XidEvent {
  /** Normalized `domain:bus:device` (hex, no leading zeros). */
  pci: string;
  code: number;
  message: string;
}

const XID_RE = /NVRM: Xid \(PCI:([0-9a-fA-F]{1,8}):([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})(?:\.[0-7])?\): (\d+),?\s*(.*)$/;

/** Parses one kernel log line; undefined when it is not an XID report. */
export function parseXidLine(line: string): XidEvent | undefined {
  const m = XID_RE.exec(line);
  if (!m) return undefined;
  return { pci: pciKey(m[1]!, m[2]!, m[3]!), code: Number(m[4]!), message: line.slice(line.indexOf('NVRM:')).trim().slice(0, 2000) };
}

function pciKey(domain: string, bus: string, device: string): string {
  return [domain, bus, device].map((h) => parseInt(h, 16).toString(16)).join(':');
}

/** `00000000:3B:00.0` (nvidia-smi pci.bus_id) -> normalized key, as parseXidLine's. */
export function busIdKey(busId: string): string | undefined {
  const m = /^([0-9a-fA-F]{1,8}):([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})(?:\.[0-7])?$/.exec(busId.trim());
  return m ? pciKey(m[1]!, m[2]!, m[3]!) : undefined;
}

/** Maps XID lines to GPU indices through the inventory's pciBusId. */
export function xidFaults(lines: string[], inventory: GpuInventory[]): GpuFault[] {
  const byBus = new Map<string, number>();
  for (const g of inventory) {
    const k = g.pciBusId ? busIdKey(g.pciBusId) : undefined;
    if (k) byBus.set(k, g.index);
  }
  const out: GpuFault[] = [];
  for (const line of lines) {
    const x = parseXidLine(line);
    if (!x) continue;
    const index = byBus.get(x.pci);
    if (index === undefined) continue; // not one of ours (or inventory unknown yet)
    out.push({ index, kind: 'xid', code: x.code, message: x.message });
  }
  return out;
}

export class XidWatcher {
  private offset: number | undefined;
  private partial = '';
  private readonly seen = new Set<string>();

  constructor(private readonly source: XidSource) {}

  async poll(inventory: GpuInventory[]): Promise<GpuFault[]> {
    return xidFaults(await this.newLines(), inventory);
  }

  private async newLines(): Promise<string[]> {
    const src = this.source;
    if ('file' in src) return this.readFile(src.file);
    const out = await new Promise<string>((resolve, reject) =>
      execFile(src.command[0]!, src.command.slice(1), { timeout: 10_000, maxBuffer: 16 * 1024 * 1024, shell: false }, (err, stdout) => (err ? reject(err) : resolve(stdout))),
    );
    const fresh: string[] = [];
    for (const line of out.split('\n')) {
      if (!line.includes('NVRM: Xid') || this.seen.has(line)) continue;
      this.seen.add(line);
      fresh.push(line);
    }
    if (this.seen.size > 10_000) for (const l of [...this.seen].slice(0, 5_000)) this.seen.delete(l);
    return fresh;
  }

  private readFile(path: string): string[] {
    let size: number;
    try {
      size = statSync(path).size;
    } catch {
      return [];
    }
    if (this.offset === undefined) {
      this.offset = size; // start at the end: old XIDs were reported by an earlier run
      return [];
    }
    if (size < this.offset) {
      this.offset = 0;
      this.partial = '';
    }
    if (size === this.offset) return [];
    const len = Math.min(size - this.offset, 4 * 1024 * 1024);
    const buf = Buffer.alloc(len);
    const fd = openSync(path, 'r');
    try {
      readSync(fd, buf, 0, len, this.offset);
    } finally {
      closeSync(fd);
    }
    this.offset += len;
    const text = this.partial + buf.toString('utf8');
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    return lines;
  }
}
