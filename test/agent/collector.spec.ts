import { chmodSync, mkdtempSync, readdirSync, readFileSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { GpuInventory, GpuSample } from '@nuri/contracts';
import { NvidiaSmiCollector, parseNumber, parseQueryGpuCsv } from '../../apps/agent/src/collector/nvidia-smi';
import { SimulatedCollector, simulatedUuid } from '../../apps/agent/src/collector/simulated';
import { busIdKey, parseXidLine, XidWatcher, xidFaults } from '../../apps/agent/src/collector/xid';
import { loadConfig, ConfigError } from '../../apps/agent/src/config';
import { once } from '../../apps/agent/src/main';
import { fullJitterDelay } from '../../apps/agent/src/backoff';
import { Outbox } from '../../apps/agent/src/outbox';

const repoRoot = resolve(__dirname, '../..');
const FIXTURES = resolve(repoRoot, '../shared/fixtures/nvidia-smi');

/** The `--query-gpu ... --format=csv` sections of a capture, with their banner label. */
function querySections(file: string): Array<{ label: string; csv: string }> {
  const lines = readFileSync(join(FIXTURES, file), 'utf8').split('\n');
  const out: Array<{ label: string; csv: string }> = [];
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i]!.startsWith('# $ nvidia-smi --query-gpu=') || !lines[i]!.includes('--format=csv')) continue;
    const label = lines[i - 1]!.replace(/^#\s*/, '');
    let j = i + 1;
    while (j < lines.length && lines[j]!.startsWith('#')) j++;
    const body: string[] = [];
    while (j < lines.length && lines[j]!.trim() !== '' && !lines[j]!.startsWith('#')) body.push(lines[j++]!);
    out.push({ label, csv: body.join('\n') });
  }
  return out;
}

const captures = readdirSync(FIXTURES).filter((f) => f.endsWith('.txt'));

describe('nvidia-smi query parser on real captures', () => {
  it('finds the captures', () => {
    expect(captures.length).toBeGreaterThanOrEqual(3);
  });

  for (const file of captures) {
    const sections = querySections(file);
    it(`${file}: has idle and load query-gpu sections`, () => {
      expect(sections.map((s) => s.label.split(' ')[0]!)).toEqual(expect.arrayContaining(['idle', 'load']));
    });
    for (const s of sections) {
      it(`${file} [${s.label}] parses into valid wire objects`, () => {
        const r = parseQueryGpuCsv(s.csv);
        expect(r.badRows).toBe(0);
        expect(r.gpus).toHaveLength(1);
        const g = r.gpus[0]!;
        expect(() => GpuInventory.parse(g.inventory)).not.toThrow();
        expect(() => GpuSample.parse(g.sample)).not.toThrow();
        expect(g.inventory.index).toBe(0);
        expect(g.inventory.uuid).toMatch(/^GPU-/);
        expect(g.inventory.pciBusId).toMatch(/^0{8}:[0-9A-F]{2}:[0-9A-F]{2}\.0$/);
        expect(g.inventory.memoryTotalBytes).toBeGreaterThan(1024 ** 3);
        expect(g.sample.memoryUsedBytes).toBeGreaterThanOrEqual(0);
        expect(g.sample.temperatureCelsius).toBeGreaterThan(20);
        expect(g.sample.powerWatts).toBeGreaterThan(10);
        expect(g.sample.smClockHertz).toBeGreaterThan(100e6);
        expect(Array.isArray(g.sample.throttleReasons)).toBe(true);
      });
    }
  }

  it('reads the H100 under load exactly', () => {
    const load = querySections('linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01.txt').find((s) => s.label.startsWith('load'))!;
    const { gpus } = parseQueryGpuCsv(load.csv);
    expect(gpus[0]!.inventory).toMatchObject({ model: 'NVIDIA H100 80GB HBM3', memoryTotalBytes: 81559 * 1024 * 1024, pciBusId: '00000000:00:09.0' });
    expect(gpus[0]!.sample).toMatchObject({
      utilization: 1,
      memoryUsedBytes: 19818 * 1024 * 1024,
      temperatureCelsius: 59,
      temperatureMarginCelsius: 26,
      powerWatts: 631.95,
      smClockHertz: 1980e6,
      eccCorrected: 0,
      eccUncorrected: 0,
      remappedRowsFailure: false,
      throttleReasons: [],
    });
    const idle = querySections('linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01.txt').find((s) => s.label.startsWith('idle'))!;
    expect(parseQueryGpuCsv(idle.csv).gpus[0]!.sample.throttleReasons).toEqual(['gpu_idle']);
  });

  it('skips and counts what a consumer GPU and MIG mode cannot report', () => {
    const rtx = querySections('linux-x86_64__nvidia-geforce-rtx-2080-super__595.71.05.txt')[0]!;
    const r = parseQueryGpuCsv(rtx.csv);
    expect(r.gpus[0]!.sample.eccCorrected).toBeUndefined();
    expect(r.gpus[0]!.sample.temperatureMarginCelsius).toBeUndefined();
    expect(r.skipped).toBeGreaterThan(0);
    const mig = querySections('linux-x86_64__nvidia-h100-mig__590.48.01.txt')[0]!;
    const m = parseQueryGpuCsv(mig.csv);
    expect(m.gpus[0]!.sample.utilization).toBeUndefined();
    expect(m.skipped).toBeGreaterThan(0);
  });

  it('takes nounits output, hex, sentinels and unknown errors without crashing', () => {
    const csv = [
      'index, uuid, name, memory.used [MiB], utilization.gpu [%], power.draw [W], temperature.gpu, clocks_event_reasons.active, remapped_rows.failure, total_energy_consumption [mJ]',
      '0, GPU-a, NVIDIA H800, 1024, 50, 300.5, 70, 0x0000000000000044, Yes, 5000',
      '1, GPU-b, NVIDIA H800, [Unknown Error], [Not Supported], [Requested functionality has been deprecated], N/A, [N/A], maybe, garbage',
      'x, GPU-c, broken',
    ].join('\n');
    const r = parseQueryGpuCsv(csv);
    expect(r.gpus).toHaveLength(2);
    expect(r.badRows).toBe(1);
    expect(r.gpus[0]!.sample).toMatchObject({ memoryUsedBytes: 1024 * 1024 * 1024, utilization: 0.5, powerWatts: 300.5, temperatureCelsius: 70, throttleReasons: ['sw_power_cap', 'hw_thermal_slowdown'], remappedRowsFailure: true, energyJoules: 5 });
    expect(r.gpus[1]!.sample).toEqual({ index: 1, uuid: 'GPU-b' });
    expect(r.skipped).toBe(7);
  });

  it('never throws on arbitrary input', () => {
    fc.assert(fc.property(fc.string(), fc.string(), (a, b) => {
      parseQueryGpuCsv(`index, memory.used [MiB], ${a}\n0, ${b}, ${a}`);
      parseNumber(a);
    }));
  });
});

describe('NvidiaSmiCollector and --once against a fake nvidia-smi', () => {
  const dir = mkdtempSync(join(tmpdir(), 'nuri-fake-smi-'));
  const h100 = querySections('linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01.txt').find((s) => s.label.startsWith('load'))!;
  // Refuses a field like an old driver does, then prints the capture; records its argv.
  const fake = join(dir, 'nvidia-smi');
  writeFileSync(join(dir, 'capture.csv'), h100.csv + '\n');
  writeFileSync(fake, `#!/bin/sh\necho "$@" >> ${dir}/argv\ncase "$*" in *total_energy_consumption*) echo 'Field "total_energy_consumption" is not a valid field to query.'; exit 2;; esac\ncat ${dir}/capture.csv\n`);
  chmodSync(fake, 0o755);
  afterEach(() => vi.restoreAllMocks());

  it('queries with execFile, retries without an unknown field, maps XIDs by PCI bus id', async () => {
    const kern = join(dir, 'kern.log');
    writeFileSync(kern, 'NVRM: Xid (PCI:0000:00:09): 13, old one before start\n');
    const c = new NvidiaSmiCollector({ binary: fake, xidSource: { file: kern } });
    const inv = await c.inventory();
    expect(inv[0]!.pciBusId).toBe('00000000:00:09.0');
    expect(await c.gpuModel()).toBe('h100');
    expect(await c.faults()).toEqual([]);
    appendFileSync(kern, '[ 1234.5] NVRM: Xid (PCI:0000:00:09): 79, pid=1234, name=python, GPU has fallen off the bus.\nNVRM: Xid (PCI:0000:3b:00): 48, not ours\n');
    const samples = await c.sample({ busyGpus: new Set() });
    expect(samples[0]!.utilization).toBe(1);
    const faults = await c.faults();
    expect(faults).toEqual([expect.objectContaining({ index: 0, kind: 'xid', code: 79 })]);
    const argv = readFileSync(join(dir, 'argv'), 'utf8').trim().split('\n');
    expect(argv[0]!).toContain('--query-gpu=index,uuid');
    expect(argv[0]!).toContain('--format=csv');
    expect(argv[argv.length - 1]!).not.toContain('total_energy_consumption');
  });

  it('--once prints inventory and sample as JSON', async () => {
    let out = '';
    vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => { out += String(s); return true; });
    const cfg = loadConfig(['--once', '--nvidia-smi', fake, '--node-name', 'gpu-001'], {});
    expect(await once(cfg)).toBe(0);
    vi.restoreAllMocks();
    const j = JSON.parse(out);
    expect(j).toMatchObject({ node: 'gpu-001', collector: 'nvidia-smi', gpuModel: 'h100' });
    expect(j.inventory[0]).toMatchObject({ index: 0, model: 'NVIDIA H100 80GB HBM3' });
    expect(j.sample.gpus[0]).toMatchObject({ powerWatts: 631.95, temperatureMarginCelsius: 26 });
  });
});

describe('XID parsing', () => {
  it('parses kernel lines and normalizes bus ids', () => {
    expect(parseXidLine('kernel: NVRM: Xid (PCI:0000:3b:00): 79, pid=\'<unknown>\', name=<unknown>, GPU has fallen off the bus.')).toMatchObject({ pci: '0:3b:0', code: 79 });
    expect(parseXidLine('NVRM: Xid (PCI:0000:CA:00.0): 94, pid=5, Contained ECC error')).toMatchObject({ pci: '0:ca:0', code: 94 });
    expect(parseXidLine('NVRM: GPU at PCI:0000:3b:00: GPU-abc')).toBeUndefined();
    expect(busIdKey('00000000:3B:00.0')).toBe('0:3b:0');
    const inv = [{ index: 3, uuid: 'u', model: 'm', memoryTotalBytes: 1, pciBusId: '00000000:3B:00.0' }];
    expect(xidFaults(['NVRM: Xid (PCI:0000:3b:00): 48, DBE'], inv)).toEqual([expect.objectContaining({ index: 3, code: 48, kind: 'xid' })]);
  });

  it('polls a command source without repeating lines', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-xid-'));
    const log = join(dir, 'dmesg.txt');
    writeFileSync(log, 'NVRM: Xid (PCI:0000:3b:00): 31, first\n');
    const w = new XidWatcher({ command: ['cat', log] });
    const inv = [{ index: 1, uuid: 'u', model: 'm', memoryTotalBytes: 1, pciBusId: '00000000:3B:00.0' }];
    expect(await w.poll(inv)).toHaveLength(1);
    expect(await w.poll(inv)).toHaveLength(0);
    appendFileSync(log, 'NVRM: Xid (PCI:0000:3b:00): 43, second\n');
    expect((await w.poll(inv)).map((f) => f.code)).toEqual([43]);
  });
});

describe('SimulatedCollector', () => {
  it('has deterministic uuids, follows jobs, accumulates energy and injects faults', async () => {
    let t = 0;
    const c = new SimulatedCollector({ nodeName: 'sim-1', gpus: 4, model: 'h800', now: () => t });
    const inv = await c.inventory();
    expect(inv.map((g) => g.uuid)).toEqual([0, 1, 2, 3].map((i) => simulatedUuid('sim-1', i)));
    expect(simulatedUuid('sim-1', 0)).not.toBe(simulatedUuid('sim-2', 0));
    expect(inv[0]!.model).toBe('NVIDIA H800');
    await c.sample({ busyGpus: new Set([1]) });
    for (let i = 0; i < 10; i++) { t += 1000; await c.sample({ busyGpus: new Set([1]) }); }
    t += 1000;
    const s = await c.sample({ busyGpus: new Set([1]) });
    expect(s[1]!.utilization).toBeGreaterThan(0.8);
    expect(s[0]!.utilization).toBeLessThan(0.01);
    expect(s[1]!.powerWatts!).toBeGreaterThan(s[0]!.powerWatts! * 3);
    expect(s[1]!.temperatureCelsius!).toBeGreaterThan(s[0]!.temperatureCelsius!);
    expect(s[1]!.energyJoules!).toBeGreaterThan(s[0]!.energyJoules!);
    for (const g of s) GpuSample.parse(g);
    c.inject({ kind: 'xid', index: 2, code: 79 });
    c.inject({ kind: 'hot', index: 3 });
    c.inject({ kind: 'vanished', index: 0 });
    expect((await c.faults()).map((f) => f.kind)).toEqual(['xid', 'hot', 'vanished']);
    expect(await c.faults()).toEqual([]);
    const s2 = await c.sample({ busyGpus: new Set() });
    expect(s2.map((g) => g.index)).toEqual([1, 2, 3]);
    expect(s2.find((g) => g.index === 3)!.temperatureCelsius).toBe(95);
  });
});

describe('agent config', () => {
  it('fails fast naming the field, flags override env', () => {
    expect(() => loadConfig([], {})).toThrow(/gatewayUrl \(--gateway-url \/ NURI_GATEWAY_URL\)/);
    expect(() => loadConfig(['--grace-seconds', 'soon'], { NURI_GATEWAY_URL: 'ws://x', NURI_NODE_TOKEN: 't' })).toThrow(/graceSeconds/);
    expect(() => loadConfig(['--nope'], {})).toThrow(ConfigError);
    const c = loadConfig(['--node-name=n1', '--sample-interval-seconds', '2'], { NURI_GATEWAY_URL: 'ws://h/agent', NURI_NODE_TOKEN: 't', NURI_NODE_NAME: 'envname', NURI_COLLECTOR: 'simulated' });
    expect(c).toMatchObject({ nodeName: 'n1', sampleIntervalSeconds: 2, collector: 'simulated', gatewayUrl: 'ws://h/agent' });
    // The reconnect backoff: 0.5 s to 30 s by default, a shorter cap from the environment or a flag.
    expect(c).toMatchObject({ backoffBaseSeconds: 0.5, backoffCapSeconds: 30 });
    const env = { NURI_GATEWAY_URL: 'ws://h/agent', NURI_NODE_TOKEN: 't', NURI_BACKOFF_CAP_SECONDS: '2' };
    expect(loadConfig([], env).backoffCapSeconds).toBe(2);
    expect(() => loadConfig(['--backoff-cap-seconds', '0'], env)).toThrow(/backoffCapSeconds/);
  });
});

describe('backoff and outbox', () => {
  it('full jitter stays within [0, min(cap, base*2^n)]', () => {
    fc.assert(fc.property(fc.nat(100), fc.double({ min: 0, max: 0.999999, noNaN: true }), (n, r) => {
      const d = fullJitterDelay(n, 100, 30_000, () => r);
      return d >= 0 && d <= Math.min(30_000, 100 * 2 ** n);
    }));
    expect(fullJitterDelay(50, 100, 30_000, () => 0.999)).toBeLessThanOrEqual(30_000);
  });

  it('drops the oldest samples first, never job events, and acks by seq', () => {
    const o = new Outbox({ maxSamples: 2 });
    const s = () => o.push({ v: 1, type: 'samples', at: 0, gpus: [] });
    s();
    o.push({ v: 1, type: 'job_event', at: 0, event: { kind: 'started', jobId: 'j', pid: 1 } });
    s(); s(); s();
    expect(o.droppedSamples).toBe(2);
    expect(o.pending().map((m) => `${m.type}:${m.seq}`)).toEqual(['job_event:2', 'samples:4', 'samples:5']);
    expect(o.ack(4).map((m) => m.seq)).toEqual([2, 4]);
    expect(o.pending().map((m) => m.seq)).toEqual([5]);
  });
});
