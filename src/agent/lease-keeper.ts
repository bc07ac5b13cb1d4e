/**
 * Our own lease: acquire it (reuse, previous subnet, or a random free one, created
 * atomically; a lost race tries the next), renew it before expiry with retries, and
 * notice when it is gone so the agent re-acquires instead of forwarding for a subnet
 * it no longer holds.
 */
import { type Cidr, cidrToKey, formatCidr, formatIp4 } from "../config/cidr.ts";
import type { NetworkConfig } from "../config/network.ts";
import { chooseSubnet, NoFreeSubnetError, renewAt } from "../lease/allocate.ts";
import { decodeLeaseRecord, encodeLeaseValue, type Lease, type LeaseAttrs } from "../lease/lease.ts";
import { errorText, type Logger } from "../log.ts";
import type { Registry, RegistryRecord } from "../registry/registry.ts";
import type { AgentMetrics } from "./status.ts";

export interface LeaseKeeperOptions {
  readonly registry: Registry;
  readonly config: NetworkConfig;
  readonly attrs: LeaseAttrs;
  readonly ttlMs: number;
  readonly renewMarginMs: number;
  readonly previous: Cidr | null;
  /**
   * Subnet keys this node knows it held (its subnet.env, its state file). A lease that
   * carries our PublicIP but is not among them may belong to another live node with the
   * same PublicIP: it is refused, not shared.
   */
  readonly owned: ReadonlySet<string>;
  /** Where the node's record lives, for the error message. */
  readonly stateFile: string;
  readonly log: Logger;
  readonly metrics: AgentMetrics;
  /** Registry reachable again / failing, for health reporting. */
  readonly onRegistryError: (e: unknown) => void;
  readonly onRegistryOk: () => void;
  /** Called with the new lease whenever it changes (after a loss and re-acquire). */
  readonly onLease: (lease: Lease) => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A lease carries our PublicIP, but nothing on this node says we held it. */
export class LeaseConflictError extends Error {
  override name = "LeaseConflictError";
  constructor(lease: Lease, publicIp: number, stateFile: string) {
    const until =
      lease.expiresAt === null
        ? "never expires (a reservation)"
        : `expires ${new Date(lease.expiresAt).toISOString()}`;
    super(
      `lease ${lease.key} carries our public IP ${formatIp4(publicIp)}, but this node has no record of holding it ` +
        `(neither its subnet file nor ${stateFile} names it): another node may use the same public IP, and sharing ` +
        `its subnet would break both. Give this node its own --public-ip; or, if this node really owned that lease and ` +
        `its state was wiped, delete the lease (tartan leases delete ${lease.key}) — it ${until}`,
    );
  }
}

export class LeaseKeeper {
  #lease: Lease | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #stopped = false;
  #reacquiring = false;
  #reacquiringKey: string | null = null;
  readonly #o: LeaseKeeperOptions;
  readonly #owned: Set<string>;
  /** Renew this long before expiry: the flag, capped at half the TTL so short TTLs still work. */
  readonly marginMs: number;

  constructor(o: LeaseKeeperOptions) {
    this.#o = o;
    this.#owned = new Set(o.owned);
    this.marginMs = Math.min(o.renewMarginMs, Math.floor(o.ttlMs / 2));
  }

  get lease(): Lease | null {
    return this.#lease;
  }

  /**
   * Our subnet key: the lease held, or while it is re-acquired the one we are trying to
   * get back — not null in between, or the registry's put of our own lease could be
   * programmed as a remote one (and then removed, with our local entry, once we hold it).
   */
  get key(): string | null {
    return this.#lease?.key ?? this.#reacquiringKey;
  }

  get renewAt(): number | null {
    return this.#lease ? renewAt(this.#lease.expiresAt, this.marginMs, Date.now()) : null;
  }

  /**
   * Acquires a lease; retries registry errors with backoff forever (until stopped),
   * throws NoFreeSubnetError when the range is full.
   */
  async acquire(previous: Cidr | null = this.#o.previous): Promise<Lease> {
    const { registry, config, attrs, log } = this.#o;
    const value = encodeLeaseValue(attrs);
    let backoff = 500;
    const exclude = new Set<string>();
    while (!this.#stopped) {
      try {
        const { records } = await registry.list();
        const leases = records
          .map((r) => decodeLeaseRecord(r, config))
          .flatMap((d) => (d.ok ? [d.lease] : []));
        const choice = chooseSubnet({ config, leases, publicIp: attrs.publicIp, previous, exclude });
        let rec: RegistryRecord | null;
        if (choice.kind === "full") throw new NoFreeSubnetError(config, choice.capacity);
        if (choice.kind === "reuse" && !this.#owned.has(choice.lease.key))
          throw new LeaseConflictError(choice.lease, attrs.publicIp, this.#o.stateFile);
        if (choice.kind === "reuse") {
          rec = await registry.renew(
            choice.lease.key,
            value,
            choice.lease.expiresAt === null ? null : this.#o.ttlMs,
          );
          if (rec)
            log.info("reusing the lease that carries our public IP", {
              subnet: choice.lease.key,
              publicIp: formatIp4(attrs.publicIp),
            });
        } else {
          rec = await registry.create(cidrToKey(choice.subnet), value, this.#o.ttlMs);
          if (rec)
            log.info("acquired a new lease", {
              subnet: formatCidr(choice.subnet),
              chosen: choice.why,
              publicIp: formatIp4(attrs.publicIp),
            });
          else log.info("lost the race for a subnet, trying another", { subnet: formatCidr(choice.subnet) });
        }
        this.#o.onRegistryOk();
        if (!rec) {
          exclude.add(choice.kind === "reuse" ? choice.lease.key : cidrToKey(choice.subnet));
          continue;
        }
        const d = decodeLeaseRecord(rec, config);
        if (!d.ok) throw new Error(`registry returned an invalid lease for ${rec.key}: ${d.reason}`);
        this.#lease = d.lease;
        this.#owned.add(d.lease.key);
        this.#o.metrics.acquisitions++;
        this.#schedule();
        return d.lease;
      } catch (e) {
        if (e instanceof NoFreeSubnetError || e instanceof LeaseConflictError) throw e;
        this.#o.metrics.registryErrors++;
        this.#o.onRegistryError(e);
        log.warn("lease acquisition failed, retrying", { error: errorText(e), retryInMs: backoff });
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 10_000);
      }
    }
    throw new Error("stopped");
  }

  #schedule(delay?: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#stopped || !this.#lease) return;
    const at = this.renewAt;
    if (at === null) return;
    const ms = delay ?? Math.max(0, at - Date.now());
    this.#timer = setTimeout(() => void this.#renew(), ms);
  }

  async #renew(): Promise<void> {
    const lease = this.#lease;
    if (!lease || this.#stopped) return;
    const { registry, log } = this.#o;
    try {
      const rec = await registry.renew(lease.key, encodeLeaseValue(this.#o.attrs), this.#o.ttlMs);
      this.#o.onRegistryOk();
      if (!rec) {
        log.warn("our lease is gone from the registry (deleted or expired); re-acquiring", {
          subnet: lease.key,
        });
        await this.lost();
        return;
      }
      const d = decodeLeaseRecord(rec, this.#o.config);
      if (d.ok) this.#lease = d.lease;
      this.#o.metrics.renewals++;
      log.info("renewed lease", {
        subnet: lease.key,
        expiresAt: rec.expiresAt === null ? "never" : new Date(rec.expiresAt).toISOString(),
      });
      this.#schedule();
    } catch (e) {
      this.#o.metrics.renewalFailures++;
      this.#o.metrics.registryErrors++;
      this.#o.onRegistryError(e);
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

  /** The registry says our lease is gone or no longer ours: get one again (the same subnet if still free). */
  async lost(): Promise<void> {
    if (this.#reacquiring || this.#stopped) return;
    this.#reacquiring = true;
    const old = this.#lease;
    this.#reacquiringKey = old?.key ?? null;
    this.#lease = null;
    try {
      const lease = await this.acquire(old?.subnet ?? null);
      if (old && lease.key !== old.key)
        this.#o.log.warn(
          "lease re-acquired with a DIFFERENT subnet; pods on the old subnet must be restarted",
          { old: old.key, new: lease.key },
        );
      else this.#o.log.info("lease re-acquired", { subnet: lease.key });
      this.#o.onLease(lease);
    } catch (e) {
      this.#o.log.error("could not re-acquire a lease; this node no longer holds a subnet", {
        error: errorText(e),
      });
    } finally {
      this.#reacquiring = false;
      this.#reacquiringKey = null;
    }
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
  }
}
