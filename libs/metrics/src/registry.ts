import { Registry } from 'prom-client';
import { ExpositionWriter } from './exposition';

/** Writes one or more complete metric families (HELP, TYPE, samples) in Prometheus text. */
export type TextBlock = (w: ExpositionWriter) => void;

/**
 * A prom-client Registry that also renders hand-written blocks (the per-GPU fleet
 * families) after the prom-client metrics, so `registry.metrics()` is the whole
 * exposition. Only the Prometheus text format (0.0.4) is supported.
 */
export class NuriRegistry extends Registry {
  private readonly blocks: TextBlock[] = [];

  addTextBlock(block: TextBlock): void {
    this.blocks.push(block);
  }

  /**
   * The whole exposition as UTF-8 bytes, written into one buffer: what GET /metrics
   * should send (no 80 MB string for a 30,000-GPU fleet).
   */
  async metricsBuffer(): Promise<Buffer> {
    const head = await super.metrics();
    const w = new ExpositionWriter(Buffer.byteLength(head) + 64 * 1024);
    w.text(head);
    for (const block of this.blocks) block(w);
    return w.finish();
  }

  override async metrics(): Promise<string> {
    return (await this.metricsBuffer()).toString('utf8');
  }
}

/** A fresh, empty registry: one per server process, one per test. */
export function createRegistry(): NuriRegistry {
  return new NuriRegistry();
}
