export { CgroupManager, JobCgroup, ownCgroups, type CgroupLimits, type CgroupFeatures, type CgroupVersion } from './cgroup';
export { findGpuDevices, deviceAllowRules, charMajors, splitDev, NVIDIA_CONTROL_DEVICES, type GpuDevices, type DeviceNode } from './devices';
export { UidAllocator, parseUidRange, pidsOfUid, processesByUid, type UidRange } from './uids';
export { agentDir, jobDir, releaseJobDir, openLog, blockedAncestor, writeJobScript } from './files';
export { GATE_SCRIPT, gateArgs, gateTools, resolveCommand, type GateTools } from './spawn';

/** How the agent isolates its jobs (flags of the agent; all optional). */
export interface IsolationOptions {
  /** 'auto' (default): v2 with controllers, else v1, else v2 kill-only; 'none': process groups only. */
  cgroup?: 'auto' | 'v1' | 'v2' | 'none';
  /** Where cgroup hierarchies are mounted (default /sys/fs/cgroup). */
  cgroupRoot?: string;
  /** Most tasks (processes + threads) per job; 0: no limit. Default 16384. */
  pidsMax?: number;
  /** Memory limit per GPU the job holds (a job of no GPU counts as one). Default: none. */
  memoryPerGpuBytes?: number;
  /** Limit each job to its own GPU devices (default true; needs the v1 devices controller). */
  constrainDevices?: boolean;
  /** Where the NVIDIA device nodes are (default /dev). */
  deviceDir?: string;
  /** Run each job as its own uid (and gid) from this range when the agent is root. */
  uidRange?: { first: number; last: number };
}

export const DEFAULT_PIDS_MAX = 16384;

/** `64G`, `512Mi`, `1073741824` -> bytes (binary units); throws on anything else. */
export function parseBytes(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B?)\s*$/i.exec(text);
  if (!m) throw new Error('must be a size such as 80G, 512Mi or a number of bytes');
  const mult = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 }[m[2]!.toUpperCase() as '' | 'K' | 'M' | 'G' | 'T'];
  const n = Math.floor(Number(m[1]!) * mult);
  if (!Number.isSafeInteger(n) || n < 1 << 20) throw new Error('must be at least 1M');
  return n;
}
