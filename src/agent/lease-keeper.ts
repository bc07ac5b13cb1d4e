/**
 * Our own lease, through the lease source: acquire it (retrying the source's transient
 * errors with backoff), record it in the node's state file so it survives a reboot,
 * renew it before expiry, and when it is lost acquire again — the same subnet if it is
 * still free — instead of forwarding for a subnet we no longer hold.
 */
import { type Cidr, cidrToKey } from "../config/cidr.ts";
import type { Cidr6 } from "../config/cidr6.ts";
import type { NetworkConfig } from "../config/network.ts";
import { renewAt } from "../lease/allocate.ts";
import type { Lease, LeaseAttrs } from "../lease/lease.ts";
import { type NodeMemory, writeStateFile } from "../lease/memory.ts";
import { LeaseRefusedError, type LeaseSource, SourceWaitingError } from "../lease/source.ts";
import { errorText, type Logger } from "../log.ts";
import type { AgentMetrics } from "../status/status.ts";
import type { SourceHealth } from "./source-health.ts";
import { StoppableSleep } from "./stoppable-sleep.ts";

/** Asking again while the source says "not yet" (a Node without a podCIDR): 1 s, doubling up to 10 s. */
export const WAIT_MIN_MS = 1000;
export const WAIT_MAX_MS = 10_000;

export interface LeaseKeeperOptions {
  readonly source: LeaseSource;
  readonly config: NetworkConfig;
  readonly attrs: LeaseAttrs;
  /** The TTL the source gives leases: the renewal margin is capped at half of it. */
  readonly ttlMs: number;
  readonly renewMarginMs: number;
  /** What this node remembered at start (subnet.env, state file). */
  readonly memory: NodeMemory;
  /** `<state-dir>/<node>.lease`, rewritten whenever a lease is taken. */
  readonly stateFile: string;
  readonly log: Logger;
  readonly metrics: AgentMetrics;
  readonly health: SourceHealth;
  /** Called with the new lease after a loss and re-acquisition (not for the first one). */
  readonly onLease: (lease: Lease) => void;
}

export class LeaseKeeper {
  #lease: Lease | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #reacquiring = false;
  /** While a lost lease is re-acquired: its subnet key (see `key`). */
  #reacquiringKey: string | null = null;
  readonly #sleep = new StoppableSleep();
  readonly #o: LeaseKeeperOptions;
  readonly #owned: Set<string>;
  /** Renew this long before expiry: the flag, capped at half the TTL so short TTLs still work. */
  readonly marginMs: number;

  constructor(o: LeaseKeeperOptions) {
    this.#o = o;
    this.#owned = new Set(o.memory.owned);
    this.marginMs = Math.min(o.renewMarginMs, Math.floor(o.ttlMs / 2));
  }

  get lease(): Lease | null {
    return this.#lease;
  }

  /**
   * Our subnet key: the lease held, or while a lost one is re-acquired the one we are
   * trying to get back — not null in between, or the source's put of our own lease could
   * be programmed as a remote one (and then removed, with our local entry, once we hold it).
   */
  get key(): string | null {
    return this.#lease?.key ?? this.#reacquiringKey;
  }

  get renewAt(): number | null {
    return this.#lease ? renewAt(this.#lease.expiresAt, this.marginMs, Date.now()) : null;
  }

  /**
   * Acquires a lease, asking first for `previous`; retries transient errors with backoff
   * until stopped, and waits (saying why once) while the source says not yet; throws
   * LeaseRefusedError (range full, PublicIP conflict) at once.
   */
  async acquire(
    previous: Cidr | null = this.#o.memory.previous,
    previous6: Cidr6 | null = this.#o.memory.previous6 ?? null,
  ): Promise<Lease> {
    const { source, config, attrs, log } = this.#o;
    let backoff = 500;
    let wait = WAIT_MIN_MS;
    while (!this.#sleep.stopped) {
      try {
        const memory = { previous, previous6, owned: this.#owned };
        const lease = await source.acquire({ config, attrs, memory });
        this.#o.health.ok();
        this.#o.health.waited();
        this.#took(lease);
        return lease;
      } catch (e) {
        if (e instanceof LeaseRefusedError) throw e;
        if (e instanceof SourceWaitingError) {
          this.#o.health.waiting(e.message);
          await this.#sleep.sleep(wait);
          wait = Math.min(wait * 2, WAIT_MAX_MS);
          continue;
        }
        this.#o.health.failed(e);
        log.warn("lease acquisition failed, retrying", { error: errorText(e), retryInMs: backoff });
        await this.#sleep.sleep(backoff);
        backoff = Math.min(backoff * 2, 10_000);
      }
    }
    throw new Error("stopped");
  }

  #took(lease: Lease): void {
    this.#lease = lease;
    this.#owned.add(lease.key).add(cidrToKey(lease.subnet));
    this.#o.metrics.acquisitions++;
    try {
      writeStateFile(this.#o.stateFile, lease.key);
    } catch (e) {
      this.#o.log.error(
        "cannot record our lease in the state file; after a reboot this node may be refused it",
        {
          path: this.#o.stateFile,
          error: errorText(e),
        },
      );
    }
    this.#schedule();
  }

  #schedule(delay?: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#sleep.stopped || !this.#lease) return;
    const at = this.renewAt;
    if (at === null) return;
    const ms = delay ?? Math.max(0, at - Date.now());
    this.#timer = setTimeout(() => void this.#renew(), ms);
  }

  async #renew(): Promise<void> {
    const lease = this.#lease;
    if (!lease || this.#sleep.stopped) return;
    const { source, log } = this.#o;
    try {
      const renewed = await source.renew(lease, this.#o.attrs);
      this.#o.health.ok();
      if (this.#lease !== lease) return; // lost and re-acquired meanwhile
      if (!renewed) {
        log.warn("our lease is gone from the registry (deleted or expired); re-acquiring", {
          subnet: lease.key,
        });
        await this.lost();
        return;
      }
      this.#lease = renewed;
      this.#o.metrics.renewals++;
      log.info("renewed lease", {
        subnet: lease.key,
        expiresAt: renewed.expiresAt === null ? "never" : new Date(renewed.expiresAt).toISOString(),
      });
      this.#schedule();
    } catch (e) {
      this.#o.metrics.renewalFailures++;
      this.#o.health.failed(e);
      const left = lease.expiresAt === null ? Number.POSITIVE_INFINITY : lease.expiresAt - Date.now();
      // retry well before expiry: a tenth of what is left, between 1 s and 30 s
      const retry = Math.max(1000, Math.min(30_000, Math.floor(left / 10)));
      log.warn("lease renewal failed, retrying", {
        subnet: lease.key,
        error: errorText(e),
        retryInMs: retry,
        msLeft: Math.round(left),
      });
      this.#schedule(retry);
    }
  }

  /** The source says our lease is gone or no longer ours: get one again (the same subnet if still free). */
  async lost(): Promise<void> {
    if (this.#reacquiring || this.#sleep.stopped) return;
    this.#reacquiring = true;
    const old = this.#lease;
    this.#reacquiringKey = old?.key ?? null;
    this.#lease = null;
    if (this.#timer) clearTimeout(this.#timer);
    try {
      const lease = old
        ? await this.acquire(old.subnet, old.subnet6 ?? null)
        : await this.acquire(this.#o.memory.previous, this.#o.memory.previous6 ?? null);
      if (old && lease.key !== old.key)
        this.#o.log.warn(
          "lease re-acquired with a DIFFERENT subnet; pods on the old subnet must be restarted",
          { old: old.key, new: lease.key },
        );
      else this.#o.log.info("lease re-acquired", { subnet: lease.key });
      this.#o.onLease(lease);
    } catch (e) {
      if (this.#sleep.stopped) return;
      this.#o.log.error("could not re-acquire a lease; this node no longer holds a subnet", {
        error: errorText(e),
      });
    } finally {
      this.#reacquiring = false;
      this.#reacquiringKey = null;
    }
  }

  stop(): void {
    this.#sleep.stop();
    if (this.#timer) clearTimeout(this.#timer);
  }
}
