/**
 * A Backend that programs nothing and records everything it is asked (for unit tests
 * of the agent's loops): every apply's diff, setLocal, prepare and abandon; it mirrors
 * what would be programmed, and can be told to fail its next applies or be unhealthy.
 */
import type { Backend, BackendAnnouncement, BackendHealth } from "../../src/backend/backend.ts";
import type { Lease } from "../../src/lease/lease.ts";
import type { LeaseDiff } from "../../src/lease/reconcile.ts";

export interface RecordedApply {
  readonly add: string[];
  readonly update: string[];
  readonly remove: string[];
}

export class RecordingBackend implements Backend {
  readonly name = "alloc" as const;
  readonly applies: RecordedApply[] = [];
  /** What the datapath would hold: subnet key → lease. */
  readonly programmed = new Map<string, Lease>();
  readonly locals: string[] = [];
  prepares = 0;
  abandoned = 0;
  closed = 0;
  /** Applies still to fail (each failure is counted in `failures`). */
  failNext = 0;
  failures = 0;
  healthy: BackendHealth = { ok: true };
  announcement: BackendAnnouncement = {
    backendType: "vxlan",
    vxlan: { VNI: 1, VtepMAC: "0e:00:00:00:00:01" },
    mtu: 1450,
  };

  async prepare(): Promise<BackendAnnouncement> {
    this.prepares++;
    return this.announcement;
  }

  async setLocal(lease: Lease): Promise<void> {
    this.locals.push(lease.key);
  }

  async apply(diff: LeaseDiff): Promise<void> {
    if (this.failNext > 0) {
      this.failNext--;
      this.failures++;
      throw new Error("recording backend: apply failed as asked");
    }
    const keys = (ls: readonly Lease[]) => ls.map((l) => l.key).sort();
    this.applies.push({ add: keys(diff.add), update: keys(diff.update), remove: keys(diff.remove) });
    for (const l of diff.remove) this.programmed.delete(l.key);
    for (const l of [...diff.add, ...diff.update]) this.programmed.set(l.key, l);
  }

  async health(): Promise<BackendHealth> {
    return this.healthy;
  }

  async counters(): Promise<Record<string, number>> {
    return { programmed: this.programmed.size };
  }

  async close(): Promise<void> {
    this.closed++;
  }

  async abandon(): Promise<void> {
    this.abandoned++;
  }
}
