import { describe, expect, it } from 'vitest';
import { loadConfig } from './config';
import { logLine } from './main';

const JOB = '0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a';
const AT = new Date('2026-12-03T10:00:00.000Z');

describe('agent log format (NURI_LOG_FORMAT / --log-format)', () => {
  it('json: one object a line with the node, and the job the message names', () => {
    const line = logLine('json', 'gpu-node-07', 'warn', `job ${JOB}: rank 1 exited 137`, AT);
    expect(line.endsWith('\n')).toBe(true);
    expect(line.trim().split('\n')).toHaveLength(1);
    expect(JSON.parse(line)).toEqual({ time: AT.toISOString(), level: 'warn', node: 'gpu-node-07', message: `job ${JOB}: rank 1 exited 137`, job: JOB });
    expect(JSON.parse(logLine('json', 'n1', 'info', 'connected', AT))).not.toHaveProperty('job');
  });

  it('text (the default): a timestamped line, no colour codes', () => {
    expect(logLine('text', 'n1', 'info', 'connected', AT)).toBe(`${AT.toISOString()} info connected\n`);
    expect(loadConfig(['--once'], {}).logFormat).toBe('text');
  });

  it('is read from NURI_LOG_FORMAT or --log-format; a bad value names the flag and the variable', () => {
    expect(loadConfig(['--once'], { NURI_LOG_FORMAT: 'json' }).logFormat).toBe('json');
    expect(loadConfig(['--once', '--log-format=json'], {}).logFormat).toBe('json');
    expect(() => loadConfig(['--once'], { NURI_LOG_FORMAT: 'xml' })).toThrow(/logFormat \(--log-format \/ NURI_LOG_FORMAT\)/);
  });
});
