/**
 * The watchdog: a datapath that broke under the agent (device deleted by hand, program
 * detached) is rebuilt and every lease programmed again, instead of being reported
 * unhealthy forever. One check at a time; a failed rebuild is retried on the next tick.
 */
import type { Backend, BackendAnnouncement } from "../backend/backend.ts";
import type { Lease } from "../lease/lease.ts";
import { errorText, type Logger } from "../log.ts";
import type { AgentMetrics } from "../status/status.ts";

export interface WatchdogOptions {
  readonly backend: Pick<Backend, "health" | "prepare" | "setLocal">;
  /** What the datapath announced when it was first prepared (its VTEP MAC must not change). */
  readonly announced: BackendAnnouncement;
  readonly ownLease: () => Lease | null;
  /** Programs every remote lease again after a rebuild. */
  readonly reprogramAll: () => Promise<void>;
  /** How many leases are programmed, for the log line. */
  readonly programmed: () => number;
  readonly log: Logger;
  readonly metrics: AgentMetrics;
  readonly everyMs?: number;
}

export class Watchdog {
  #timer: ReturnType<typeof setInterval> | null = null;
  #checking = false;
  #stopped = false;

  constructor(private readonly o: WatchdogOptions) {}

  start(): void {
    if (this.#timer || this.#stopped) return;
    this.#timer = setInterval(() => void this.check(), this.o.everyMs ?? 5000);
  }

  /** One pass: healthy → nothing; broken → prepare again, set our subnet, reprogram everything. */
  async check(): Promise<void> {
    if (this.#checking || this.#stopped) return;
    this.#checking = true;
    const { backend, log } = this.o;
    try {
      const h = await backend.health().catch((e) => ({ ok: false, reason: errorText(e) }));
      if (h.ok || this.#stopped) return;
      log.warn("datapath broken; rebuilding it", { reason: h.reason });
      const again = await backend.prepare();
      const was = this.o.announced.vxlan?.VtepMAC;
      if (again.vxlan?.VtepMAC !== was)
        log.warn("the rebuilt datapath has a new VTEP MAC", { old: was, new: again.vxlan?.VtepMAC });
      const own = this.o.ownLease();
      if (own) await backend.setLocal(own);
      await this.o.reprogramAll();
      this.o.metrics.repairs++;
      log.info("datapath rebuilt and reprogrammed", { leases: this.o.programmed() });
    } catch (e) {
      log.error("rebuilding the datapath failed; retrying", { error: errorText(e) });
    } finally {
      this.#checking = false;
    }
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }
}
