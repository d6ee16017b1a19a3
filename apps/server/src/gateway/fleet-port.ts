import type { AgentGpuFault, AgentHello, AgentJobEvent, AgentSamples, ServerMessage } from '@nuri/contracts';
import type { z } from 'zod';

export type SequencedMessage = z.infer<typeof AgentSamples> | z.infer<typeof AgentJobEvent> | z.infer<typeof AgentGpuFault>;

/**
 * What the WebSocket transport needs from the rest of the server. The transport owns
 * connections, framing, limits and acks; the fleet side owns the database. Keeping the
 * seam here lets the transport be tested with a strict fake and the fleet without sockets.
 */
export interface FleetPort {
  /** True when `token` is the agent token of node `nodeName` (compared against its stored hash). */
  authenticate(nodeName: string, token: string): Promise<boolean>;
  /**
   * An agent said hello. Returns the highest seq already applied for its stream (so the
   * agent can drop what is acknowledged) and the messages to send it to reconcile
   * (stop jobs that should no longer run, start jobs it should be running).
   */
  hello(nodeName: string, hello: z.infer<typeof AgentHello>): Promise<{ ackedSeq: number; send: ServerMessage[] }>;
  /**
   * Apply one sequenced message exactly once: 'duplicate' when seq was already applied for
   * this node and stream (the transport still acks it).
   */
  apply(nodeName: string, stream: string, message: SequencedMessage): Promise<'applied' | 'duplicate'>;
  heartbeat(nodeName: string, at: number): Promise<void>;
  /** The node's last connection closed (not necessarily gone: the down timeout decides). */
  disconnected(nodeName: string): Promise<void>;
  /** Optional: every transport counter increment (metrics of rejected messages and the like). */
  counted?(counter: string, node: string | undefined): void;
}

/** What the rest of the server needs from the transport. */
export interface AgentLink {
  /** Sends to the node's live connection; false when it has none. */
  send(nodeName: string, message: ServerMessage): boolean;
  isConnected(nodeName: string): boolean;
}
