import { Logger } from '@nestjs/common';
import type { LedgerRepository } from '@nuri/db';
import { IDLE_CANCEL_REASON } from '../lifecycle/job-lifecycle';

const minutes = (s: number) => `${Math.round(s / 60)} min`;

/**
 * A tenant's idle policy (off unless set: PUT /v1/tenants/:name/idle-policy), applied to the
 * running attempts whose GPUs the gateways saw idle: past the notice, the job's reason says
 * it is idle and when it will be cancelled (once); past the cancel threshold, the job is
 * asked to stop as a cancel whose reason the end records. Safe from several gateways at once
 * (each step is guarded in the database).
 */
export class IdlePolicyEnforcer {
  private readonly log = new Logger('IdlePolicy');

  constructor(private readonly ledger: LedgerRepository) {}

  async run(now: Date): Promise<{ notified: string[]; cancelled: string[]; busyAgain: string[] }> {
    const notified: string[] = [];
    const cancelled: string[] = [];
    // A job told it was idle whose GPUs got busy again is no longer threatened with a cancel.
    const busyAgain = await this.ledger.clearIdleNotices();
    for (const v of await this.ledger.idlePastPolicy(now)) {
      const idle = (now.getTime() - v.idleSince.getTime()) / 1000;
      if (v.action === 'cancel') {
        const reason = `${IDLE_CANCEL_REASON} after every GPU sat idle for ${minutes(idle)} (the tenant's limit: ${minutes(v.cancelAfterSeconds ?? 0)})`;
        if (await this.ledger.cancelIdle(v.jobId, v.attempt, reason, now)) {
          cancelled.push(v.jobId);
          this.log.warn(`job ${v.jobId}: ${reason}`);
        }
        continue;
      }
      const when = v.cancelAfterSeconds ? `; it will be cancelled at ${new Date(v.idleSince.getTime() + v.cancelAfterSeconds * 1000).toISOString()} unless they get busy` : '';
      const reason = `idle: every GPU under the idle threshold since ${v.idleSince.toISOString()}${when} (tenant idle policy)`;
      if (await this.ledger.markIdleNotified(v.jobId, v.attempt, reason, now)) notified.push(v.jobId);
    }
    return { notified, cancelled, busyAgain };
  }
}
