import type { AgentHello, JobEvent, ServerMessage } from '@nuri/contracts';
import type { z } from 'zod';
import type { FleetPort, SequencedMessage } from '../../apps/server/src/gateway/fleet-port';

type Hello = z.infer<typeof AgentHello>;

/**
 * Strict fake of the database side: authenticates against a token table, refuses apply for
 * a stream that never said hello, dedups sequenced messages by (node, stream, seq) like the
 * real one, and job events also by content (jobId + kind) across streams, as the server
 * must for a restarted agent resending its journal under a new stream.
 */
export class FakeFleet implements FleetPort {
  readonly hellos: Array<{ node: string; hello: Hello }> = [];
  /** Every message applied (first time only), in order. */
  readonly applied: Array<{ node: string; stream: string; message: SequencedMessage }> = [];
  readonly duplicates: Array<{ node: string; stream: string; seq: number }> = [];
  /** Job events by content key, first arrival only. */
  readonly jobEvents = new Map<string, JobEvent>();
  readonly heartbeats: Array<{ node: string; at: number }> = [];
  readonly disconnects: string[] = [];
  /** Nodes whose disconnected() has finished (it takes `disconnectMs`). */
  readonly disconnectsDone: string[] = [];
  disconnectMs = 0;
  /** Messages hello() returns for a node (reconcile). */
  readonly onHello = new Map<string, ServerMessage[]>();
  failApply: ((m: SequencedMessage) => boolean) | undefined;
  private readonly seqs = new Map<string, Set<number>>();
  private readonly streams = new Set<string>();
  private readonly waiters = new Set<() => void>();

  constructor(readonly tokens: Record<string, string>) {}

  async authenticate(nodeName: string, token: string): Promise<boolean> {
    return this.tokens[nodeName] !== undefined && this.tokens[nodeName] === token;
  }

  async hello(nodeName: string, hello: Hello) {
    if (hello.node !== nodeName) throw new Error(`fake: hello for ${hello.node} on ${nodeName}'s connection reached the port`);
    this.hellos.push({ node: nodeName, hello });
    const key = `${nodeName}/${hello.stream}`;
    this.streams.add(key);
    const set = this.seqs.get(key);
    let acked = 0;
    while (set?.has(acked + 1)) acked++;
    this.notify();
    return { ackedSeq: acked, send: this.onHello.get(nodeName) ?? [] };
  }

  async apply(nodeName: string, stream: string, message: SequencedMessage): Promise<'applied' | 'duplicate'> {
    const key = `${nodeName}/${stream}`;
    if (!this.streams.has(key)) throw new Error(`fake: apply on ${key} before hello`);
    if (this.failApply?.(message)) throw new Error('fake: database unavailable');
    let set = this.seqs.get(key);
    if (!set) this.seqs.set(key, (set = new Set()));
    if (set.has(message.seq)) {
      this.duplicates.push({ node: nodeName, stream, seq: message.seq });
      return 'duplicate';
    }
    set.add(message.seq);
    this.applied.push({ node: nodeName, stream, message });
    if (message.type === 'job_event') {
      const k = `${nodeName}/${message.event.jobId}/${message.event.kind}`;
      if (!this.jobEvents.has(k)) this.jobEvents.set(k, message.event);
    }
    this.notify();
    return 'applied';
  }

  async heartbeat(nodeName: string, at: number): Promise<void> {
    this.heartbeats.push({ node: nodeName, at });
  }

  async disconnected(nodeName: string): Promise<void> {
    this.disconnects.push(nodeName);
    this.notify();
    if (this.disconnectMs) await new Promise((r) => setTimeout(r, this.disconnectMs));
    this.disconnectsDone.push(nodeName);
  }

  exit(node: string, jobId: string) {
    return this.jobEvents.get(`${node}/${jobId}/exited`) as Extract<JobEvent, { kind: 'exited' }> | undefined;
  }

  appliedSeqs(node: string, stream: string): number[] {
    return this.applied.filter((a) => a.node === node && a.stream === stream).map((a) => a.message.seq);
  }

  async until(pred: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`timeout waiting for ${what}`);
      await new Promise<void>((r) => {
        const w = () => { this.waiters.delete(w); r(); };
        this.waiters.add(w);
        setTimeout(w, 25);
      });
    }
  }

  private notify() {
    for (const w of [...this.waiters]) w();
  }
}
