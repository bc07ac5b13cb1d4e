/**
 * The seam between the agent and wherever leases come from — flannel's `subnet.Manager`.
 * The agent acquires, renews and watches leases only through a `LeaseSource`; one
 * implementation sits over the registries (registry-source.ts: sqlite, etcd), another
 * over the Kubernetes API (kube-source.ts: Nodes' podCIDRs and flannel's annotations).
 */
import type { Ip4 } from "../config/cidr.ts";
import type { NetworkConfig } from "../config/network.ts";
import type { RegistryRecord, WatchCallbacks, WatchHandle } from "../registry/registry.ts";
import type { Lease, LeaseAttrs } from "./lease.ts";
import type { NodeMemory } from "./memory.ts";

export type { WatchHandle } from "../registry/registry.ts";

/**
 * One lease as a source delivers it, before validation: the key is flannel's subnet key
 * ("10.244.3.0-24"), the value flannel's lease JSON
 * (`{"PublicIP":…,"BackendType":…,"BackendData":…}`), expiresAt null when it never
 * expires. The agent decodes it once (`decodeLeaseRecord`); a record that does not
 * decode is skipped, logged once and counted, never programmed.
 */
export interface LeaseRecord extends RegistryRecord {
  /**
   * Set when the source already knows this object cannot be a lease, and why: the agent
   * skips, logs and counts it like a record that fails to decode, with this reason. (The
   * kube source does not use it: it skips, logs and counts such Nodes itself, by reason.) Its key must still be the
   * one a later put or delete of the same object uses.
   */
  readonly invalid?: string;
}

export type LeaseEvent =
  | { readonly type: "put"; readonly record: LeaseRecord }
  | { readonly type: "delete"; readonly key: string; readonly revision: number }
  /** The source could not replay every change (compaction, 410 Gone): here is the whole set. */
  | { readonly type: "resync"; readonly records: readonly LeaseRecord[]; readonly revision: number };

/** As a registry watch's callbacks (onError, onRecovered), with lease events. */
export type LeaseWatchCallbacks = Omit<WatchCallbacks, "onEvents"> & {
  /** Changes in the order they happened. Keys not mentioned are unchanged. */
  onEvents(events: readonly LeaseEvent[]): void;
};

/** What the agent asks for when it takes a lease. */
export interface AcquireRequest {
  readonly config: NetworkConfig;
  /** What our lease publishes: PublicIP, backend type and data (VNI, VtepMAC). */
  readonly attrs: LeaseAttrs;
  /** What this node remembers holding: the lease to take back, and which leases are ours. */
  readonly memory: NodeMemory;
}

/**
 * Where the agent's leases come from. Every method may be called again after it threw;
 * none retries by itself except `watch`.
 *
 * Errors: `NetworkConfigError` and `LeaseRefusedError` are final (the agent stops with
 * their message, which says what to fix). `SourceWaitingError` means the source answers
 * but cannot give this yet: the agent logs its message once, names it at /readyz, and asks
 * again. Anything else is transient: the agent retries with backoff, reports the source
 * "degraded" meanwhile, and keeps the datapath as it is.
 *
 * Revisions are numbers that grow with every change (etcd's revision, sqlite's event id,
 * Kubernetes' resourceVersion read as a number). The agent shows them and passes the
 * revision of a list back to `watch`; it never does arithmetic on them.
 *
 * The agent's own lease must appear in `list`/`watch` like any other, carrying our
 * PublicIP: when it is deleted there, or rewritten with another PublicIP, the agent
 * treats the lease as lost and calls `acquire` again.
 *
 * How the Kubernetes source fits (flannel's kube subnet manager, kube-source.ts):
 * - `description`: "kubernetes:https://10.96.0.1:443 (Node NAME)" (the API server, no token).
 * - `networkConfig`: the --net-config-path file (`readNetworkConfigFile`), with SubnetLen
 *   taken from our Node's podCIDR; a SourceWaitingError while it has none.
 * - `acquire`: read our Node's podCIDR (it must lie in config.network), PATCH our
 *   annotations from `attrs` (only when they differ), and return the lease with
 *   expiresAt null. `memory` is ignored (the podCIDR decides). No podCIDR yet:
 *   SourceWaitingError (the agent waits; /readyz names it).
 * - `renew`: never called (expiresAt null); return the lease unchanged if it is.
 * - `list`/`watch`: one record per Node that is a lease — key `cidrToKey(podCIDR)`, value
 *   the lease JSON made from the annotations, expiresAt null, revision the resourceVersion.
 *   Nodes that cannot be leases are skipped by the source itself (logged once, counted per
 *   reason: `skippedByReason`) and never delivered. A deleted Node (or one whose key
 *   changed, or that stopped being a lease) is a delete event for its old key; 410 Gone is
 *   a re-list delivered as a resync.
 * - `close`: stop the watches.
 */
export interface LeaseSource {
  /** Where leases come from, for logs and status, without secrets: "etcd:https://10.0.0.1:2379". */
  readonly description: string;

  /**
   * The network config (flannel's net-conf.json), validated. Null when there is none yet:
   * the agent waits and asks again. Throws NetworkConfigError when it exists but is
   * invalid or unreadable in a way only an operator can fix.
   */
  networkConfig(): Promise<NetworkConfig | null>;

  /**
   * Takes a lease for this node and publishes `attrs` in it. One attempt (a lost race
   * for a free subnet may be retried inside). Takes back the lease `memory` names when it
   * can; never takes a lease another node holds. Throws LeaseRefusedError when no lease
   * can be had until an operator acts (the range is full; a lease carries our PublicIP
   * but this node has no record of it; the node has no podCIDR).
   */
  acquire(req: AcquireRequest): Promise<Lease>;

  /**
   * Extends a lease that has an expiry (called `renewMargin` before it), publishing
   * `attrs` again. Returns the lease as it now stands, or null when it is gone or no
   * longer ours (the agent then acquires again). Never called for expiresAt null.
   */
  renew(lease: Lease, attrs: LeaseAttrs): Promise<Lease | null>;

  /** Every lease record (ours included) and the revision the list is consistent at. */
  list(): Promise<{ records: LeaseRecord[]; revision: number }>;

  /**
   * Delivers every change after `fromRevision`, in order, until stopped: puts, deletes,
   * and a resync with the whole set when changes were lost. Retries by itself.
   */
  watch(fromRevision: number, cb: LeaseWatchCallbacks): WatchHandle;

  close(): Promise<void>;

  /**
   * flannel's GetStoredPublicIP: an address an operator set for this node in the source
   * (the kube source's `node-public-ip` annotation), which replaces --public-ip; null when
   * none is set or it cannot be read now (as flanneld: the agent goes on without it).
   * Throws LeaseRefusedError when one is set but is not an IPv4 address.
   */
  storedPublicIp?(): Promise<Ip4 | null>;

  /** Objects of the source that are not leases right now, per reason (a fixed set of reasons), for /metrics. */
  skippedByReason?(): Readonly<Record<string, number>>;
}

/** The network config exists but cannot be used: an operator must fix it. */
export class NetworkConfigError extends Error {
  override name = "NetworkConfigError";
}

/**
 * The source answers, but cannot give what was asked yet (our Node has no podCIDR): the
 * agent says so once (the message is that line), shows it at /readyz, and asks again.
 */
export class SourceWaitingError extends Error {
  override name = "SourceWaitingError";
}

/** No lease can be had until an operator acts; the message says what to do. */
export class LeaseRefusedError extends Error {
  override name = "LeaseRefusedError";
}
