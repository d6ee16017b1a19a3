import { Registry } from 'prom-client';

/** Writes one or more complete metric families (HELP, TYPE, samples) in Prometheus text. */
export type TextBlock = (write: (chunk: string) => void) => void;

/**
 * A prom-client Registry that also renders hand-written text blocks (the per-GPU fleet
 * families) after the prom-client metrics, so `registry.metrics()` is the whole
 * exposition. Only the Prometheus text format (0.0.4) is supported.
 */
export class NuriRegistry extends Registry {
  private readonly blocks: TextBlock[] = [];

  addTextBlock(block: TextBlock): void {
    this.blocks.push(block);
  }

  override async metrics(): Promise<string> {
    const head = await super.metrics();
    const chunks: string[] = [head];
    for (const block of this.blocks) block((c) => chunks.push(c));
    return chunks.join('');
  }
}

/** A fresh, empty registry: one per server process, one per test. */
export function createRegistry(): NuriRegistry {
  return new NuriRegistry();
}
