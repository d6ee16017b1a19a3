import type { AgentGpuFault, AgentJobEvent, AgentSamples } from '@nuri/contracts';
import type { z } from 'zod';

export type SequencedMessage = z.infer<typeof AgentSamples> | z.infer<typeof AgentJobEvent> | z.infer<typeof AgentGpuFault>;
type Unsequenced<T> = T extends unknown ? Omit<T, 'seq'> : never;
export type UnsequencedMessage = Unsequenced<SequencedMessage>;

export interface OutboxOptions {
  /** Most samples messages kept unacknowledged; the oldest is dropped first. */
  maxSamples?: number;
  /** Most gpu_fault messages kept unacknowledged; the oldest is dropped first. */
  maxFaults?: number;
}

/**
 * Sequenced messages of one stream, kept in seq order until acknowledged. Job events are
 * never dropped; samples and faults are bounded, oldest first, and the drops counted.
 * Seq starts at 1, so a server that answers "nothing applied" with 0 acks nothing.
 */
export class Outbox {
  private readonly entries: SequencedMessage[] = [];
  private nextSeq = 1;
  private samples = 0;
  private faults = 0;
  droppedSamples = 0;
  droppedFaults = 0;
  readonly maxSamples: number;
  readonly maxFaults: number;

  constructor(opts: OutboxOptions = {}) {
    this.maxSamples = opts.maxSamples ?? 600;
    this.maxFaults = opts.maxFaults ?? 1000;
  }

  push(msg: UnsequencedMessage): SequencedMessage {
    const full = { ...msg, seq: this.nextSeq++ } as SequencedMessage;
    this.entries.push(full);
    if (full.type === 'samples') {
      this.samples++;
      if (this.samples > this.maxSamples) this.dropOldest('samples');
    } else if (full.type === 'gpu_fault') {
      this.faults++;
      if (this.faults > this.maxFaults) this.dropOldest('gpu_fault');
    }
    return full;
  }

  /** Removes everything with seq <= `seq`; returns what was removed. */
  ack(seq: number): SequencedMessage[] {
    let n = 0;
    while (n < this.entries.length && this.entries[n]!.seq <= seq) n++;
    const removed = this.entries.splice(0, n);
    for (const m of removed) {
      if (m.type === 'samples') this.samples--;
      else if (m.type === 'gpu_fault') this.faults--;
    }
    return removed;
  }

  pending(): readonly SequencedMessage[] {
    return this.entries;
  }

  get size(): number {
    return this.entries.length;
  }

  get lastSeq(): number {
    return this.nextSeq - 1;
  }

  private dropOldest(type: 'samples' | 'gpu_fault'): void {
    const i = this.entries.findIndex((e) => e.type === type);
    if (i < 0) return;
    this.entries.splice(i, 1);
    if (type === 'samples') {
      this.samples--;
      this.droppedSamples++;
    } else {
      this.faults--;
      this.droppedFaults++;
    }
  }
}
