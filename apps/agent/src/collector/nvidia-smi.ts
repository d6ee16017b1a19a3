import { execFile } from 'node:child_process';
import type { GpuInventory, GpuModel, GpuSample } from '@nuri/contracts';
import { NVML_THROTTLE_BITS } from '@nuri/contracts/gpu';
import { modelOf, type CollectContext, type Collector, type GpuFault } from './types';
import { XidWatcher, type XidSource } from './xid';

/** Fields the collector asks for. Unknown ones (old drivers) are dropped and retried. */
export const QUERY_FIELDS = [
  'index',
  'uuid',
  'name',
  'pci.bus_id',
  'memory.total',
  'memory.used',
  'utilization.gpu',
  'temperature.gpu',
  'temperature.gpu.tlimit',
  'power.draw',
  'total_energy_consumption',
  'clocks.sm',
  'ecc.errors.corrected.volatile.total',
  'ecc.errors.uncorrected.volatile.total',
  'remapped_rows.failure',
  'clocks_event_reasons.active',
];

/** Bits of clocks_event_reasons.active (a.k.a. clocks_throttle_reasons.active), from the one list in contracts. */
const REASON_BITS: Array<[number, string]> = Object.entries(NVML_THROTTLE_BITS).map(([name, bit]) => [bit, name]);

export interface ParsedGpu {
  inventory: GpuInventory;
  sample: GpuSample;
}

export interface ParseResult {
  gpus: ParsedGpu[];
  /** Wanted values that were present but unreadable (`[N/A]`, `[Not Supported]`, garbage...). */
  skipped: number;
  /** Rows that could not be used at all (no index). */
  badRows: number;
}

interface Header {
  name: string;
  unit?: string;
}

export function parseHeader(h: string): Header {
  const m = /^(.*?)\s*\[([^\]]*)\]\s*$/.exec(h.trim());
  return m ? { name: m[1]!.trim(), unit: m[2]!.trim() } : { name: h.trim() };
}

/** nvidia-smi's ways of saying "no value". */
export function isSentinel(v: string): boolean {
  const t = v.trim();
  return t === '' || t === 'N/A' || /^\[.*\]$/.test(t);
}

/** A number with an optional unit (`81559 MiB`, `631.95 W`, `100 %`, `0x1F`); undefined if unreadable. */
export function parseNumber(v: string, headerUnit?: string): { value: number; unit?: string } | undefined {
  const t = v.trim();
  if (isSentinel(t)) return undefined;
  if (/^0x[0-9a-f]+$/i.test(t)) {
    const n = Number(BigInt(t));
    return Number.isFinite(n) ? { value: n, unit: headerUnit } : undefined;
  }
  const m = /^(-?\d+(?:\.\d+)?(?:e[+-]?\d+)?)\s*([A-Za-z%]+)?$/i.exec(t);
  if (!m) return undefined;
  const value = Number(m[1]!);
  if (!Number.isFinite(value)) return undefined;
  return { value, unit: m[2] ?? headerUnit };
}

export function parseBool(v: string): boolean | undefined {
  const t = v.trim().toLowerCase();
  if (['enabled', 'yes', 'active', 'true', 'on'].includes(t)) return true;
  if (['disabled', 'no', 'not active', 'false', 'off'].includes(t)) return false;
  return undefined;
}

const UNIT_SCALE: Record<string, number> = {
  '': 1,
  b: 1,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  hz: 1,
  khz: 1e3,
  mhz: 1e6,
  ghz: 1e9,
  w: 1,
  mw: 1e-3,
  j: 1,
  mj: 1e-3,
  '%': 0.01,
  c: 1,
  us: 1e-6,
  ms: 1e-3,
  s: 1,
};

function scaled(n: { value: number; unit?: string }, defaultUnit: string): number | undefined {
  const unit = (n.unit ?? defaultUnit).toLowerCase();
  const k = UNIT_SCALE[unit]!;
  return k === undefined ? undefined : n.value * k;
}

/**
 * Parses `nvidia-smi --query-gpu=... --format=csv[,nounits]` output. Columns are found
 * by header name (any order, extra columns ignored). Never throws on values: unreadable
 * ones are left out and counted.
 */
export function parseQueryGpuCsv(text: string): ParseResult {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  const result: ParseResult = { gpus: [], skipped: 0, badRows: 0 };
  if (lines.length === 0) return result;
  const headers = lines[0]!.split(',').map(parseHeader);
  const col = new Map<string, number>();
  headers.forEach((h, i) => col.set(h.name, i));
  for (const line of lines.slice(1)) {
    const cells = line.split(',').map((c) => c.trim());
    const get = (...names: string[]): { raw: string; unit?: string } | undefined => {
      for (const n of names) {
        const i = col.get(n);
        if (i !== undefined && i < cells.length) return { raw: cells[i]!, unit: headers[i]!.unit };
      }
      return undefined;
    };
    const num = (defaultUnit: string, ...names: string[]): number | undefined => {
      const c = get(...names);
      if (!c) return undefined;
      const n = parseNumber(c.raw, c.unit);
      const v = n ? scaled(n, defaultUnit) : undefined;
      if (v === undefined) result.skipped++;
      return v;
    };
    const idx = get('index');
    const index = idx ? parseNumber(idx.raw) : undefined;
    if (!index || !Number.isInteger(index.value) || index.value < 0 || index.value > 63) {
      result.badRows++;
      continue;
    }
    const uuidCell = get('uuid');
    const uuid = uuidCell && !isSentinel(uuidCell.raw) ? uuidCell.raw.slice(0, 128) : `index-${index.value}`;
    const nameCell = get('name');
    const name = nameCell && !isSentinel(nameCell.raw) ? nameCell.raw.slice(0, 128) : 'unknown';
    const busCell = get('pci.bus_id');
    const memoryTotal = num('MiB', 'memory.total');

    const sample: GpuSample = { index: index.value, uuid };
    const set = <K extends keyof GpuSample>(k: K, v: GpuSample[K] | undefined) => {
      if (v !== undefined) sample[k] = v;
    };
    const util = num('%', 'utilization.gpu');
    set('utilization', util === undefined ? undefined : Math.min(1, Math.max(0, util)));
    const memUsed = num('MiB', 'memory.used');
    set('memoryUsedBytes', memUsed === undefined ? undefined : Math.max(0, memUsed));
    set('memoryTotalBytes', memoryTotal === undefined ? undefined : Math.max(0, memoryTotal));
    set('temperatureCelsius', num('C', 'temperature.gpu'));
    set('temperatureMarginCelsius', num('C', 'temperature.gpu.tlimit'));
    const power = num('W', 'power.draw', 'power.draw.instant', 'power.draw.average');
    set('powerWatts', power === undefined ? undefined : Math.max(0, power));
    const energy = num('mJ', 'total_energy_consumption');
    set('energyJoules', energy === undefined ? undefined : Math.max(0, energy));
    const sm = num('MHz', 'clocks.current.sm', 'clocks.sm');
    set('smClockHertz', sm === undefined ? undefined : Math.max(0, sm));
    const ce = num('', 'ecc.errors.corrected.volatile.total');
    set('eccCorrected', ce === undefined ? undefined : Math.max(0, ce));
    const ue = num('', 'ecc.errors.uncorrected.volatile.total');
    set('eccUncorrected', ue === undefined ? undefined : Math.max(0, ue));
    const remap = get('remapped_rows.failure');
    if (remap) {
      const b = parseBool(remap.raw);
      if (b === undefined) result.skipped++;
      else sample.remappedRowsFailure = b;
    }
    const reasons = get('clocks_event_reasons.active', 'clocks_throttle_reasons.active');
    if (reasons) {
      const t = reasons.raw.trim();
      if (/^0x[0-9a-f]+$/i.test(t)) {
        const bits = BigInt(t);
        sample.throttleReasons = REASON_BITS.filter(([b]) => (bits & BigInt(b)) !== 0n).map(([, n]) => n);
      } else result.skipped++;
    }
    result.gpus.push({
      inventory: {
        index: index.value,
        uuid,
        model: name,
        memoryTotalBytes: memoryTotal ?? 0,
        ...(busCell && !isSentinel(busCell.raw) ? { pciBusId: busCell.raw.slice(0, 32) } : {}),
      },
      sample,
    });
  }
  return result;
}

export interface NvidiaSmiCollectorOptions {
  /** Path of the nvidia-smi binary (or a fake for tests). Default 'nvidia-smi'. */
  binary?: string;
  timeoutMs?: number;
  /** Where XID lines come from; none = XIDs not watched. */
  xidSource?: XidSource;
  /** Temperature margin (C) at or below which a 'hot' fault is raised. Default 0. */
  hotMarginCelsius?: number;
  log?: (msg: string) => void;
}

/** Reads real GPUs through `nvidia-smi --query-gpu`. */
export class NvidiaSmiCollector implements Collector {
  readonly name = 'nvidia-smi';
  private fields = [...QUERY_FIELDS];
  private last: ParsedGpu[] = [];
  private readonly pending: GpuFault[] = [];
  private readonly xid: XidWatcher | undefined;
  private readonly hot = new Set<number>();
  private readonly remapFailed = new Set<number>();
  private readonly vanished = new Set<number>();
  /** Unreadable values and failed runs, for the agent's own metrics. */
  skippedValues = 0;
  failedRuns = 0;

  constructor(private readonly opts: NvidiaSmiCollectorOptions = {}) {
    this.xid = opts.xidSource ? new XidWatcher(opts.xidSource) : undefined;
  }

  async query(): Promise<ParsedGpu[]> {
    for (let attempt = 0; attempt < QUERY_FIELDS.length; attempt++) {
      try {
        const out = await run(this.opts.binary ?? 'nvidia-smi', [`--query-gpu=${this.fields.join(',')}`, '--format=csv'], this.opts.timeoutMs ?? 10_000);
        const r = parseQueryGpuCsv(out);
        this.skippedValues += r.skipped;
        return r.gpus;
      } catch (e) {
        const text = String((e as { stdout?: string }).stdout ?? '') + String((e as Error).message);
        const bad = /Field "([^"]+)" is not a valid field to query/.exec(text);
        if (bad && this.fields.includes(bad[1]!) && bad[1] !== 'index') {
          this.opts.log?.(`nvidia-smi does not know ${bad[1]!}; querying without it`);
          this.fields = this.fields.filter((f) => f !== bad[1]);
          continue;
        }
        this.failedRuns++;
        throw e;
      }
    }
    throw new Error('nvidia-smi accepted none of the query fields');
  }

  async inventory(): Promise<GpuInventory[]> {
    this.last = await this.query();
    return this.last.map((g) => g.inventory);
  }

  async gpuModel(): Promise<GpuModel | undefined> {
    const models = new Set(this.last.map((g) => modelOf(g.inventory.model)));
    return models.size === 1 ? [...models][0] : undefined;
  }

  async sample(_ctx: CollectContext): Promise<GpuSample[]> {
    const known = this.last.map((g) => g.inventory);
    const now = await this.query();
    const seen = new Set(now.map((g) => g.inventory.index));
    for (const inv of known) {
      if (!seen.has(inv.index) && !this.vanished.has(inv.index)) {
        this.vanished.add(inv.index);
        this.pending.push({ index: inv.index, kind: 'vanished', message: `GPU ${inv.uuid} no longer listed by nvidia-smi` });
      }
    }
    for (const g of now) {
      this.vanished.delete(g.inventory.index);
      const s = g.sample;
      const margin = s.temperatureMarginCelsius;
      if (margin !== undefined && margin <= (this.opts.hotMarginCelsius ?? 0)) {
        if (!this.hot.has(s.index)) this.pending.push({ index: s.index, kind: 'hot', message: `temperature ${s.temperatureCelsius ?? '?'} C, ${margin} C from slowdown` });
        this.hot.add(s.index);
      } else this.hot.delete(s.index);
      if (s.remappedRowsFailure && !this.remapFailed.has(s.index)) {
        this.remapFailed.add(s.index);
        this.pending.push({ index: s.index, kind: 'remap_failure', message: 'row remapping failure reported' });
      }
    }
    // Keep the inventory of every GPU ever seen, so a vanished one is reported once.
    const merged = new Map(this.last.map((g) => [g.inventory.index, g] as const));
    for (const g of now) merged.set(g.inventory.index, g);
    this.last = [...merged.values()].sort((a, b) => a.inventory.index - b.inventory.index);
    return now.map((g) => g.sample);
  }

  async faults(): Promise<GpuFault[]> {
    if (this.xid) {
      try {
        this.pending.push(...(await this.xid.poll(this.last.map((g) => g.inventory))));
      } catch (e) {
        this.opts.log?.(`xid source failed: ${(e as Error).message}`);
      }
    }
    return this.pending.splice(0);
  }
}

function run(file: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 8 * 1024 * 1024, shell: false, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' } }, (err, stdout, stderr) => {
      if (err) {
        Object.assign(err, { stdout: `${stdout}\n${stderr}` });
        reject(err);
      } else resolve(stdout);
    });
  });
}
