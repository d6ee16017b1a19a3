import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, writeSync } from 'node:fs';

export type Role = 'api' | 'scheduler' | 'gateway' | 'agent';

export interface ProcSpec {
  name: string;
  role: Role;
  command: string;
  args: string[];
  env: Record<string, string>;
  /** stdout and stderr of every start of this process, appended. */
  logPath: string;
  /** HTTP port (server roles): ready when /healthz answers. */
  port?: number;
}

/**
 * One supervised process: started, killed (-9), stopped (SIGSTOP) and continued by the
 * harness; restarted with the same command, environment and port, as a service manager would.
 * An exit the harness did not cause is a crash: counted, and restarted after `crashRestartMs`.
 */
export class Managed {
  child: ChildProcess | undefined;
  /** up: running; stopped: SIGSTOPped; down: killed or crashed, not restarted yet; ended: cleanup. */
  state: 'up' | 'stopped' | 'down' | 'ended' = 'down';
  starts = 0;
  readonly crashes: { at: number; code: number | null; signal: string | null }[] = [];
  private expectExit = false;
  private restartTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly spec: ProcSpec,
    private readonly events: { log(line: string): void; crashRestartMs: number },
  ) {}

  get name(): string {
    return this.spec.name;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  isUp(): boolean {
    return this.state === 'up';
  }

  start(): void {
    if (this.state === 'ended') return;
    clearTimeout(this.restartTimer);
    const fd = openSync(this.spec.logPath, 'a');
    writeSync(fd, `\n===== ${new Date().toISOString()} start #${this.starts + 1}: ${this.spec.command} ${this.spec.args.join(' ')}\n`);
    const child = spawn(this.spec.command, this.spec.args, { env: this.spec.env, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    this.child = child;
    this.starts++;
    this.state = 'up';
    this.expectExit = false;
    child.once('exit', (code, signal) => {
      if (this.child !== child) return;
      const expected = this.expectExit || this.state === 'ended';
      this.child = undefined;
      if (this.state !== 'ended') this.state = 'down';
      if (expected) return;
      this.crashes.push({ at: Date.now(), code, signal });
      this.events.log(`CRASH ${this.name} exited by itself (code ${code}, signal ${signal}); restarting in ${this.events.crashRestartMs} ms`);
      this.restartTimer = setTimeout(() => this.start(), this.events.crashRestartMs);
    });
    child.once('error', (e) => this.events.log(`${this.name}: spawn error ${e.message}`));
  }

  /** kill -9; resolves once it is gone. */
  async kill9(): Promise<void> {
    const child = this.child;
    clearTimeout(this.restartTimer);
    if (!child || child.exitCode !== null || child.signalCode !== null) {
      if (this.state !== 'ended') this.state = 'down';
      return;
    }
    this.expectExit = true;
    const gone = new Promise<void>((r) => child.once('exit', () => r()));
    try {
      child.kill('SIGKILL');
    } catch {
      /* already gone */
    }
    await Promise.race([gone, sleep(5000)]);
    if (this.state !== 'ended') this.state = 'down';
  }

  sigstop(): boolean {
    if (this.state !== 'up' || !this.child?.pid) return false;
    try {
      process.kill(this.child.pid, 'SIGSTOP');
      this.state = 'stopped';
      return true;
    } catch {
      return false;
    }
  }

  sigcont(): void {
    if (this.state !== 'stopped' || !this.child?.pid) return;
    try {
      process.kill(this.child.pid, 'SIGCONT');
    } catch {
      /* gone */
    }
    this.state = 'up';
  }

  /** For good: continues it if stopped, kills it, never restarts it. */
  async end(): Promise<void> {
    const child = this.child;
    clearTimeout(this.restartTimer);
    this.state = 'ended';
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise<void>((r) => child.once('exit', () => r()));
    try {
      if (child.pid) process.kill(child.pid, 'SIGCONT');
    } catch {
      /* gone */
    }
    try {
      child.kill('SIGKILL');
    } catch {
      /* gone */
    }
    await Promise.race([gone, sleep(5000)]);
  }

  /** Until /healthz answers 200 (server roles) or the deadline. */
  async ready(timeoutMs: number): Promise<boolean> {
    if (!this.spec.port) return this.isUp();
    const end = Date.now() + timeoutMs;
    while (Date.now() < end && this.state !== 'ended') {
      try {
        const r = await fetch(`http://127.0.0.1:${this.spec.port}/healthz`, { signal: AbortSignal.timeout(1000) });
        if (r.status === 200) return true;
      } catch {
        /* not yet */
      }
      await sleep(200);
    }
    return false;
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
