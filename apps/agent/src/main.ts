#!/usr/bin/env node
import { mkdirSync } from 'node:fs';
import { Agent } from './agent';
import { NvidiaSmiCollector } from './collector/nvidia-smi';
import { SimulatedCollector } from './collector/simulated';
import type { Collector } from './collector/types';
import { ConfigError, loadConfig, type AgentConfig } from './config';

function makeCollector(c: AgentConfig, log: (m: string) => void): Collector {
  if (c.collector === 'simulated') return new SimulatedCollector({ nodeName: c.nodeName, gpus: c.simGpus, model: c.simModel });
  const xidSource = c.xidFile ? { file: c.xidFile } : c.xidCommand ? { command: c.xidCommand.split(/\s+/).filter(Boolean) } : undefined;
  return new NvidiaSmiCollector({ binary: c.nvidiaSmi, xidSource, log });
}

/**
 * One log line on stderr: `<time> <level> <message>`, or with `json` one JSON object
 * (time, level, node, message, and the job the message names as `job`).
 */
export function logLine(format: AgentConfig['logFormat'], node: string, level: string, msg: string, at = new Date()): string {
  if (format !== 'json') return `${at.toISOString()} ${level} ${msg}\n`;
  // The agent names jobs by their uuid (the server's logFields does the same, with nodes).
  const job = /\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/i.exec(msg)?.[0]?.toLowerCase();
  return `${JSON.stringify({ time: at.toISOString(), level, node, message: msg, ...(job ? { job } : {}) })}\n`;
}

/** `--once`: one inventory and one sample as JSON on stdout. */
export async function once(c: AgentConfig): Promise<number> {
  const collector = makeCollector(c, (m) => process.stderr.write(`${m}\n`));
  const inventory = await collector.inventory();
  const gpuModel = await collector.gpuModel();
  const gpus = await collector.sample({ busyGpus: new Set() });
  const faults = await collector.faults();
  const extra = collector instanceof NvidiaSmiCollector ? { skippedValues: collector.skippedValues } : {};
  process.stdout.write(JSON.stringify({ node: c.nodeName, collector: collector.name, gpuModel: gpuModel ?? null, inventory, sample: { at: Date.now(), gpus }, faults, ...extra }, null, 2) + '\n');
  return 0;
}

async function main(): Promise<number> {
  let c: AgentConfig;
  try {
    c = loadConfig(process.argv.slice(2), process.env);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`nuri-agent: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  if (c.once) return once(c);
  const log = (level: string, msg: string) => process.stderr.write(logLine(c.logFormat, c.nodeName, level, msg));
  mkdirSync(c.workDir, { recursive: true });
  const agent = new Agent({
    gatewayUrl: c.gatewayUrl!,
    nodeName: c.nodeName,
    nodeToken: c.nodeToken!,
    address: c.address,
    collector: makeCollector(c, (m) => log('warn', m)),
    workDir: c.workDir,
    graceSeconds: c.graceSeconds,
    sampleIntervalMs: c.sampleIntervalSeconds * 1000,
    maxBufferedSamples: c.maxBufferedSamples,
    backoffBaseMs: c.backoffBaseSeconds * 1000,
    backoffCapMs: c.backoffCapSeconds * 1000,
    logCapBytes: c.logCapBytes,
    outputRetentionHours: c.outputRetentionHours,
    runAs: c.runAsUid !== undefined && c.runAsGid !== undefined ? { uid: c.runAsUid, gid: c.runAsGid, user: c.runAsUser, home: c.runAsHome } : undefined,
    isolation: {
      cgroup: c.cgroup,
      cgroupRoot: c.cgroupRoot,
      pidsMax: c.pidsMax,
      memoryPerGpuBytes: c.memoryPerGpu,
      constrainDevices: c.constrainDevices,
      deviceDir: c.deviceDir,
      uidRange: c.uidRange,
    },
    jobsDir: c.jobsDir,
    // SIGTERM to the agent stops its jobs (grace, then SIGKILL) and reports them cancelled.
    // After a crash instead, the next run kills leftover job process groups and reports
    // them exited with cause 'lost' (it cannot wait on another process's children).
    log: (level, msg) => {
      if (level !== 'debug' || process.env.NURI_DEBUG) log(level, msg);
    },
  });
  await agent.start();
  log('info', `nuri-agent ${c.nodeName} started, stream ${agent.streamId}, gateway ${c.gatewayUrl}`);
  const iso = agent.runner.isolation;
  log(
    iso.cgroup === 'none' || iso.uids !== 'range' ? 'warn' : 'info',
    `job isolation: cgroup ${iso.cgroup}, pids limit ${iso.pids ? 'on' : 'off'}, memory limit ${iso.memory ? 'on' : 'off'}, devices ${iso.devices ? 'constrained' : 'NOT constrained'}, uids ${iso.uids} (${iso.detail ?? ''})`,
  );
  await new Promise<void>((resolve) => {
    const bye = () => resolve();
    process.once('SIGTERM', bye);
    process.once('SIGINT', bye);
  });
  await agent.stop();
  return 0;
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (e: Error) => {
      process.stderr.write(`nuri-agent: ${e.stack ?? e.message}\n`);
      process.exit(1);
    },
  );
}
