import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/**
 * GPU device nodes and the v1 devices-controller rules that give a job only its own GPUs
 * (as Slurm's ConstrainDevices does).
 *
 * Every major that an NVIDIA device node under the device directory uses, or that
 * /proc/devices names `nvidia*`, is an "NVIDIA major". A job's cgroup denies everything
 * (`a`), then allows block devices, every other registered character major whole, and on
 * NVIDIA majors only the minors of its own `/dev/nvidia<N>` and of the shared control
 * devices. So a job cannot open another GPU by any path (a device node it makes itself
 * included), and /dev/null, ttys, InfiniBand and the rest still work.
 */

/** Shared control devices every GPU job needs. */
export const NVIDIA_CONTROL_DEVICES = ['nvidiactl', 'nvidia-uvm', 'nvidia-uvm-tools', 'nvidia-modeset'];

export interface DeviceNode {
  path: string;
  major: number;
  minor: number;
}

export interface GpuDevices {
  /** `/dev/nvidia<N>` by N. */
  gpus: Map<number, DeviceNode>;
  /** The control devices present. */
  control: DeviceNode[];
  /** Majors of every NVIDIA character device (nodes found, and /proc/devices names). */
  majors: Set<number>;
}

/** Linux dev_t -> major, minor (the kernel's new_encode_dev layout). */
export function splitDev(rdev: bigint): { major: number; minor: number } {
  const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
  const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  return { major, minor };
}

function charDevice(path: string): DeviceNode | undefined {
  try {
    const st = statSync(path, { bigint: true });
    if (!st.isCharacterDevice()) return undefined;
    return { path, ...splitDev(st.rdev) };
  } catch {
    return undefined;
  }
}

/** Registered character majors from /proc/devices: major -> names. */
export function charMajors(text = readFileSync('/proc/devices', 'utf8')): Map<number, string[]> {
  const out = new Map<number, string[]>();
  let inChar = false;
  for (const line of text.split('\n')) {
    if (/^Character devices:/.test(line)) inChar = true;
    else if (/^Block devices:/.test(line)) inChar = false;
    else if (inChar) {
      const m = /^\s*(\d+)\s+(.+)$/.exec(line);
      if (m) out.set(Number(m[1]!), [...(out.get(Number(m[1]!)) ?? []), m[2]!.trim()]);
    }
  }
  return out;
}

/** The NVIDIA device nodes under `deviceDir` (default /dev). */
export function findGpuDevices(deviceDir = '/dev', procDevices?: Map<number, string[]>): GpuDevices {
  const gpus = new Map<number, DeviceNode>();
  const control: DeviceNode[] = [];
  const majors = new Set<number>();
  let names: string[];
  try {
    names = readdirSync(deviceDir);
  } catch {
    names = [];
  }
  for (const name of names) {
    if (!name.startsWith('nvidia')) continue;
    const path = join(deviceDir, name);
    const dev = charDevice(path);
    if (!dev) {
      // nvidia-caps/ (MIG capabilities) and the like: their majors are NVIDIA majors too.
      let sub: string[];
      try {
        sub = readdirSync(path);
      } catch {
        continue;
      }
      for (const s of sub) {
        const d = charDevice(join(path, s));
        if (d) majors.add(d.major);
      }
      continue;
    }
    majors.add(dev.major);
    const m = /^nvidia(\d+)$/.exec(name);
    if (m) gpus.set(Number(m[1]!), dev);
    else if (NVIDIA_CONTROL_DEVICES.includes(name)) control.push(dev);
  }
  let registered = procDevices;
  if (!registered) {
    try {
      registered = charMajors();
    } catch {
      registered = new Map();
    }
  }
  for (const [major, ns] of registered) if (ns.some((n) => n.startsWith('nvidia'))) majors.add(major);
  return { gpus, control, majors };
}

/**
 * v1 `devices.allow` lines for a job holding `gpuIndices` (written after `a` to devices.deny).
 * Undefined when the device list cannot be built (no /proc/devices): then devices stay
 * unconstrained rather than breaking every job.
 */
export function deviceAllowRules(devs: GpuDevices, gpuIndices: number[], procDevices?: Map<number, string[]>): string[] {
  let registered = procDevices;
  if (!registered) registered = charMajors();
  // mknod stays possible (it needs CAP_MKNOD anyway, and opening a node is what is checked).
  const rules = ['b *:* rwm', 'c *:* m'];
  for (const major of [...registered.keys()].sort((a, b) => a - b)) if (!devs.majors.has(major)) rules.push(`c ${major}:* rwm`);
  const allowed: DeviceNode[] = [...devs.control];
  for (const i of gpuIndices) {
    const g = devs.gpus.get(i);
    if (g) allowed.push(g);
  }
  const seen = new Set<string>();
  for (const d of allowed) {
    const r = `c ${d.major}:${d.minor} rwm`;
    if (!seen.has(r)) rules.push(r);
    seen.add(r);
  }
  return rules;
}
