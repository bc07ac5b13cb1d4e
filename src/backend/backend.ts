/**
 * The Backend interface: how a node's datapath is set up and how remote leases are
 * programmed into it. Implementations: ebpf-vxlan/ (BPF maps), vxlan/ (kernel device,
 * routes, neighbours, FDB, as flanneld), host-gw/ (routes), alloc.ts (nothing).
 */
import type { Ip4 } from "../config/cidr.ts";
import type { Ip6 } from "../config/cidr6.ts";
import type { BackendName, NetworkConfig } from "../config/network.ts";
import type { DecapMode } from "../config/options.ts";
import type { Lease, VxlanBackendData, WireBackend } from "../lease/lease.ts";
import type { LeaseDiff } from "../lease/reconcile.ts";
import type { Logger } from "../log.ts";

/** The underlay interface the node talks to other nodes through. */
export interface ExternalInterface {
  readonly name: string;
  readonly index: number;
  /** The address leases publish as PublicIP (may be --public-ip). */
  readonly publicIp: Ip4;
  /** The interface's own address. */
  readonly ifaceIp: Ip4;
  /** Dual stack: the address leases publish as PublicIPv6 (may be --public-ipv6); null without one. */
  readonly publicIpv6?: Ip6 | null;
  /** The interface's own IPv6 address (the IPv6 VXLAN device's local address); null without one. */
  readonly ifaceIpv6?: Ip6 | null;
  readonly mtu: number;
  readonly mac: string;
}

export interface BackendContext {
  readonly log: Logger;
  readonly nodeName: string;
  readonly config: NetworkConfig;
  readonly extIface: ExternalInterface;
  /** Per-node bpffs directory for pins. */
  readonly bpffs: string;
  readonly decap: DecapMode;
}

/** What a backend publishes in our lease, and the MTU pods get. */
export interface BackendAnnouncement {
  readonly backendType: WireBackend;
  readonly vxlan: VxlanBackendData | null;
  /** Dual stack, vxlan: BackendV6Data (the IPv6 device's VNI and MAC). */
  readonly vxlan6?: VxlanBackendData | null;
  /** MTU for subnet.env FLANNEL_MTU: in a dual-stack network, what fits both families. */
  readonly mtu: number;
}

export interface BackendHealth {
  readonly ok: boolean;
  /** Why not ok, for /healthz and logs. */
  readonly reason?: string;
}

export interface Backend {
  readonly name: BackendName;
  /** Creates devices / loads programs; returns what our lease announces. Idempotent: adopts what a previous run left. */
  prepare(): Promise<BackendAnnouncement>;
  /** Our own lease is known (first acquisition, or a new subnet after a lost lease). */
  setLocal(lease: Lease): Promise<void>;
  /** Programs a diff of remote leases. Must be safe to repeat (reconcile after restart). */
  apply(diff: LeaseDiff): Promise<void>;
  /** Is the datapath attached and working? */
  health(): Promise<BackendHealth>;
  /** Datapath counters for /metrics and `status` (name → value). */
  counters(): Promise<Record<string, number>>;
  /** Agent exit: release handles, leave the datapath in place so traffic keeps flowing. */
  close(): Promise<void>;
  /**
   * The agent's start failed after prepare() (or during it): remove what this prepare()
   * created — devices, programs, pins — but never what it adopted from a previous run (a
   * failed restart must not cut the traffic that datapath carries); then release handles
   * as close() does.
   */
  abandon(): Promise<void>;
}
