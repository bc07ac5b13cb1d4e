/**
 * The lease source over a registry (sqlite or etcd), as flanneld's etcd subnet manager:
 * the network config from the registry's config document (or a --net-config-path file),
 * our lease chosen by `chooseSubnet` and created atomically (a lost race tries the next
 * subnet), renewed by rewriting it with a fresh TTL, and the registry's list and watch.
 * Dual stack: the key names both subnets, so two nodes could create different keys for
 * one subnet at once; after creating, the later of two overlapping leases yields.
 */
import { readFileSync } from "node:fs";
import { cidrToKey, formatCidr, formatIp4 } from "../config/cidr.ts";
import { formatCidr6 } from "../config/cidr6.ts";
import { type NetworkConfig, parseNetworkConfig } from "../config/network.ts";
import { subnetKey } from "../config/subnet-key.ts";
import type { Logger } from "../log.ts";
import type { Registry, RegistryRecord } from "../registry/registry.ts";
import { SLICE, yieldToLoop } from "../slices.ts";
import { chooseSubnet, NoFreeSubnet6Error, NoFreeSubnetError } from "./allocate.ts";
import { decodeLeaseRecord, encodeLeaseValue, type Lease, type LeaseAttrs, overlapping } from "./lease.ts";
import { remembers } from "./memory.ts";
import {
  type AcquireRequest,
  LeaseRefusedError,
  type LeaseSource,
  type LeaseWatchCallbacks,
  NetworkConfigError,
  type WatchHandle,
} from "./source.ts";

export interface RegistryLeaseSourceOptions {
  readonly registry: Registry;
  /** TTL of the leases we create and renew (flanneld: 24 h). */
  readonly ttlMs: number;
  /** flanneld's --net-config-path: the network config from this file instead of the registry. */
  readonly netConfigPath: string | null;
  /** Where this node records its lease, for the refusal message. */
  readonly stateFile: string;
  readonly log: Logger;
}

/** A lease carries our PublicIP, but nothing on this node says we held it. */
export class LeaseConflictError extends LeaseRefusedError {
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

/** A reservation carries our PublicIP but has no IPv6 subnet (or one the config does not allow). */
export class ReservationMismatchError extends LeaseRefusedError {
  override name = "ReservationMismatchError";
  constructor(lease: Lease, ipv6: boolean) {
    super(
      `the reservation ${lease.key} carries our public IP, but ${
        ipv6
          ? "the network config is dual stack (EnableIPv6) and it holds no IPv6 subnet in IPv6Network"
          : "the network config is IPv4 only and it holds an IPv6 subnet"
      }; reservations are the operator's and are never rewritten: replace it by hand with a key of the right form ` +
        "(10.244.3.0-24 or 10.244.3.0-24&fd00:19:0:3::-64), or delete it (tartan leases delete …)",
    );
  }
}

/** Reads and validates a net-conf.json file; every failure is final (an operator must fix the file). */
export function readNetworkConfigFile(path: string): NetworkConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new NetworkConfigError(`--net-config-path=${path}: cannot read it: ${(e as Error).message}`);
  }
  try {
    return parseNetworkConfig(text);
  } catch (e) {
    throw new NetworkConfigError(`--net-config-path=${path}: ${(e as Error).message}`);
  }
}

/** A lease record the registry returned, decoded; one that does not decode is the registry's fault. */
function decoded(registry: Registry, rec: RegistryRecord, config: NetworkConfig): Lease {
  const d = decodeLeaseRecord(rec, config);
  if (!d.ok) throw new Error(`${registry.description} returned an invalid lease for ${rec.key}: ${d.reason}`);
  return d.lease;
}

/** Every valid lease, decoded a slice at a time (50,000 records: the endpoint keeps answering). */
async function validLeases(registry: Registry, config: NetworkConfig): Promise<Lease[]> {
  const { records } = await registry.list();
  const leases: Lease[] = [];
  for (let i = 0; i < records.length; i++) {
    const d = decodeLeaseRecord(records[i]!, config);
    if (d.ok) leases.push(d.lease);
    if (i % SLICE === SLICE - 1) await yieldToLoop();
  }
  return leases;
}

/**
 * Dual stack only: a lease created earlier than ours (lower revision) that overlaps it in
 * either family. flannel's create checks the exact key only, so a node choosing the same
 * IPv4 subnet with another IPv6 one at the same moment succeeds too; the later one yields.
 */
async function earlierOverlap(registry: Registry, config: NetworkConfig, ours: Lease): Promise<Lease | null> {
  const clash = overlapping(ours, await validLeases(registry, config));
  return clash.find((l) => l.revision < ours.revision) ?? null;
}

/** Takes a lease (see LeaseSource.acquire): reuses ours, re-keys it, or creates one, retrying lost races. */
async function acquireLease(
  o: RegistryLeaseSourceOptions,
  { config, attrs, memory }: AcquireRequest,
): Promise<Lease> {
  const { registry } = o;
  const value = encodeLeaseValue(attrs);
  const exclude = new Set<string>();
  const c6 = config.ipv6 ?? null;
  for (;;) {
    const leases = await validLeases(registry, config);
    const choice = chooseSubnet({
      config,
      leases,
      publicIp: attrs.publicIp,
      previous: memory.previous,
      previous6: memory.previous6 ?? null,
      exclude,
    });
    if (choice.kind === "full") throw new NoFreeSubnetError(config, choice.capacity);
    if (choice.kind === "full6") throw new NoFreeSubnet6Error(c6!, choice.capacity);
    if (choice.kind === "reuse") {
      const held = choice.lease;
      if (!remembers(memory, held)) throw new LeaseConflictError(held, attrs.publicIp, o.stateFile);
      const rec = await registry.renew(held.key, value, held.expiresAt === null ? null : o.ttlMs);
      if (rec) {
        o.log.info("reusing the lease that carries our public IP", {
          subnet: held.key,
          publicIp: formatIp4(attrs.publicIp),
        });
        return decoded(registry, rec, config);
      }
      exclude.add(held.key); // expired or deleted since the list
      continue;
    }
    let subnet = choice.kind === "rekey" ? choice.lease.subnet : choice.subnet;
    if (choice.kind === "rekey") {
      const held = choice.lease;
      if (!remembers(memory, held)) throw new LeaseConflictError(held, attrs.publicIp, o.stateFile);
      if (held.expiresAt === null) throw new ReservationMismatchError(held, c6 !== null);
      // delete first: two keys for one IPv4 subnet would make peers program it twice
      await registry.delete(held.key);
      o.log.info(
        "our lease does not fit the network config's IPv6 side; keeping its IPv4 subnet under a new key",
        {
          old: held.key,
          ipv6: choice.subnet6 ? formatCidr6(choice.subnet6) : "none",
        },
      );
      subnet = held.subnet;
    }
    const subnet6 = choice.subnet6 ?? null;
    const key = subnet6 ? subnetKey(subnet, subnet6) : cidrToKey(subnet);
    const rec = await registry.create(key, value, o.ttlMs);
    if (rec) {
      const lease = decoded(registry, rec, config);
      const earlier = subnet6 ? await earlierOverlap(registry, config, lease) : null;
      if (earlier) {
        o.log.info("another node took an overlapping lease at the same moment; yielding it", {
          subnet: key,
          theirs: earlier.key,
        });
        await registry.delete(key);
        exclude.add(key);
        continue;
      }
      o.log.info("acquired a new lease", {
        subnet: formatCidr(subnet),
        ...(subnet6 ? { ipv6: formatCidr6(subnet6) } : {}),
        chosen: choice.kind === "rekey" ? "kept" : choice.why,
        publicIp: formatIp4(attrs.publicIp),
      });
      return lease;
    }
    o.log.info("lost the race for a subnet, trying another", { subnet: key });
    exclude.add(key);
  }
}

export function createRegistryLeaseSource(o: RegistryLeaseSourceOptions): LeaseSource {
  const { registry } = o;

  return {
    description: registry.description,

    async networkConfig(): Promise<NetworkConfig | null> {
      if (o.netConfigPath) return readNetworkConfigFile(o.netConfigPath);
      const raw = await registry.getConfig();
      if (raw === null) return null;
      try {
        return parseNetworkConfig(raw);
      } catch (e) {
        throw new NetworkConfigError(
          `the network config in ${registry.description} is invalid: ${(e as Error).message}; fix it with tartan config set FILE`,
        );
      }
    },

    acquire: (req: AcquireRequest) => acquireLease(o, req),

    async renew(lease: Lease, attrs: LeaseAttrs): Promise<Lease | null> {
      const rec = await registry.renew(lease.key, encodeLeaseValue(attrs), o.ttlMs);
      // what we wrote, with the registry's new expiry and revision
      return rec ? { ...lease, attrs, expiresAt: rec.expiresAt, revision: rec.revision } : null;
    },

    list: () => registry.list(),

    watch: (fromRevision: number, cb: LeaseWatchCallbacks): WatchHandle => registry.watch(fromRevision, cb),

    close: () => registry.close(),
  };
}
