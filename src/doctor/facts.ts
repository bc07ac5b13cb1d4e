/**
 * What `tartan doctor` knows about a node, as plain data: the one shape that fact
 * gathering (`gather.ts`, all the I/O) fills and the checks (`checks.ts`, pure) judge.
 * Every fact that could not be read carries the reason instead of a value, so a
 * judge can say "could not read X: why" rather than guess.
 */

import type { Ip4 } from "../config/cidr.ts";
import type { BackendName, NetworkConfig } from "../config/network.ts";
import type { ReadSubnetEnv } from "../config/subnet-env.ts";
import type { AnnotationNames } from "../kube/annotations.ts";
import type { Lease } from "../lease/lease.ts";
import type { FdbEntry, Neigh, Route } from "../net/ip.ts";
import type { AgentStatus } from "../status/status.ts";

/** A value, or why it could not be read. */
export type Fact<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly error: string };

export const fact = <T>(value: T): Fact<T> => ({ ok: true, value });
export const factError = <T>(error: string): Fact<T> => ({ ok: false, error });

/** The settings doctor judges against: flags, else the running agent's, else defaults. */
export interface DoctorSettings {
  readonly nodeName: string;
  /** null when neither a flag, the agent nor the network config says. */
  readonly backend: BackendName | null;
  readonly subnetFile: string;
  readonly ipMasq: boolean;
  readonly bpffs: string;
  readonly bridge: string;
  readonly cniConfDir: string;
  /** HOST:PORT of the agent's endpoint that was asked. */
  readonly http: string;
  /** Where each setting came from ("flag", "agent", "default"), for the report. */
  readonly sources: Readonly<Record<string, string>>;
}

export interface AgentFacts {
  /** The agent's /v1/status, when one answered. */
  readonly status: AgentStatus;
  /** The agent's effective options (/v1/config .options, secrets redacted). */
  readonly options: Record<string, unknown>;
  /** The network config the agent runs with (/v1/config .network), flannel's JSON. */
  readonly network: unknown;
}

export interface UnderlayFacts {
  readonly name: string;
  readonly mtu: number;
  readonly ifaceIp: Ip4;
  /** The address leases publish (--public-ip, else the interface's). */
  readonly publicIp: Ip4;
}

export interface VxlanInfo {
  readonly id?: number;
  readonly local?: string;
  readonly port?: number;
  readonly learning?: boolean;
  readonly link?: string;
}

export interface LinkFacts {
  readonly name: string;
  readonly ifindex: number;
  readonly kind: string | null;
  readonly mtu: number;
  readonly mac: string;
  /** Administratively up (the UP flag). */
  readonly up: boolean;
  readonly master: string | null;
  readonly vxlan: VxlanInfo | null;
  /** IPv4 addresses as a.b.c.d/len. */
  readonly addrs: readonly string[];
}

export interface RegistryFacts {
  readonly description: string;
  /** Valid leases (validated against the network config). */
  readonly leases: readonly Lease[];
  /** Records that failed validation: key and reason. */
  readonly invalid: readonly { readonly key: string; readonly reason: string }[];
}

/** Our Node's condition NetworkUnavailable, as the API has it. */
export interface NodeCondition {
  readonly status: string;
  readonly reason: string;
  readonly message: string;
}

/** What the Kubernetes API says about this node (--kube-subnet-mgr). */
export interface KubeFacts {
  /** "kubernetes:https://10.96.0.1:443 (Node n1)" */
  readonly description: string;
  readonly nodeName: string;
  readonly names: AnnotationNames;
  /** --set-node-network-unavailable: the agent manages the condition. */
  readonly setNodeNetworkUnavailable: boolean;
  /** Our Node; null when the API has no Node by that name. */
  readonly node: {
    /** spec.podCIDRs, else [spec.podCIDR]; empty when none is assigned. */
    readonly podCidrs: readonly string[];
    readonly annotations: Readonly<Record<string, string>>;
    readonly networkUnavailable: NodeCondition | null;
  } | null;
  /** Nodes that are not leases, and why (only reasons that mean bad data go to the registry's invalid list). */
  readonly skipped: readonly { readonly name: string; readonly reason: string; readonly detail: string }[];
}

export interface CniFile {
  readonly name: string;
  /** Plugin types the file names (top-level `type`, or each of `plugins[].type`). */
  readonly types: readonly string[];
  /** Why the file does not parse as a CNI config, if it does not. */
  readonly invalid: string | null;
}

export interface CniFacts {
  readonly dir: string;
  readonly exists: boolean;
  /** *.conf, *.conflist and *.json files, in the lexical order runtimes pick them. */
  readonly files: readonly CniFile[];
}

/** One row of `nft -j list ruleset`, reduced to what the checks read. */
export interface NftChain {
  readonly family: string;
  readonly table: string;
  readonly name: string;
  readonly hook: string | null;
  readonly policy: string | null;
}

export interface NftRule {
  readonly family: string;
  readonly table: string;
  readonly chain: string;
  readonly expr: readonly Record<string, unknown>[];
}

export interface NftFacts {
  readonly chains: readonly NftChain[];
  readonly rules: readonly NftRule[];
}

export interface BpfAttachment {
  readonly iface: string;
  /** "tc-ingress", "tc-egress" or "xdp" */
  readonly hook: string;
  readonly progId: number;
  /** As the kernel keeps it: at most 15 characters. */
  readonly progName: string;
}

/** One entry of the pinned subnet map, decoded with the ABI's codecs. */
export interface SubnetMapEntry {
  /** a.b.c.d/len */
  readonly subnet: string;
  readonly nodeIp: string;
  readonly vtepMac: string;
  /** Our own subnet's entry (flagged local). */
  readonly local: boolean;
}

export interface BpfFacts {
  /** Paths under the bpffs pin directory that exist, relative to it ("maps/tartan_subnets"). */
  readonly pins: readonly string[];
  readonly attachments: readonly BpfAttachment[];
  /** Program name → id of the program pinned under progs/ (what the running agent loaded). */
  readonly pinnedProgIds: Readonly<Record<string, number>>;
  /** The pinned subnet map, when it could be read. */
  readonly subnets: Fact<readonly SubnetMapEntry[]>;
  /** The pinned member map: node IP → leases it holds, when it could be read. */
  readonly members: Fact<Readonly<Record<string, number>>>;
  /** Dual stack: the pinned IPv6 subnet map (subnet and node as IPv6 text). */
  readonly subnets6?: Fact<readonly SubnetMapEntry[]>;
  /** Dual stack: the pinned IPv6 member map: node IPv6 address → leases it holds. */
  readonly members6?: Fact<Readonly<Record<string, number>>>;
}

export interface ProbeResult {
  /** The lease probed ("198.19.3.0/24"). */
  readonly lease: string;
  readonly publicIp: string;
  /** What was pinged: the peer's VTEP address through the overlay, or its PublicIP (host-gw). */
  readonly target: string;
  readonly ok: boolean;
  /** Average round trip in ms, when answered. */
  readonly rttMs: number | null;
  readonly error: string | null;
}

/** The IPv6 overlay device (vxlan: flannel-v6.<VNI>) as the kernel has it. */
export interface Ipv6Device {
  readonly name: string;
  readonly kind: string | null;
  readonly mtu: number;
  readonly mac: string;
  readonly up: boolean;
  readonly vxlan: {
    readonly id?: number;
    readonly local6?: string;
    readonly port?: number;
    readonly learning?: boolean;
  } | null;
  /** Global IPv6 addresses as addr/len. */
  readonly addrs: readonly string[];
}

/** A dual-stack node's IPv6 side (the network config has EnableIPv6). */
export interface Ipv6Facts {
  /** net.ipv6.conf.all.forwarding, null when unreadable. */
  readonly forwarding: string | null;
  /** The underlay's IPv6 address (what the IPv6 VXLAN device must be local to); null when it has none. */
  readonly underlayIp: string | null;
  /** Main-table IPv6 routes. */
  readonly routes: Fact<readonly Route[]>;
  /** The backend's IPv6 overlay device; null when it has none (host-gw) or it is missing. */
  readonly device: Fact<Ipv6Device | null>;
  /** IPv6 neighbours and FDB entries on that device (vxlan). */
  readonly neighbours: Fact<readonly Neigh[]>;
  readonly fdb: Fact<readonly FdbEntry[]>;
}

export interface Facts {
  /** ms since the epoch when gathering started. */
  readonly now: number;
  /** `uname -r` */
  readonly kernel: string;
  readonly settings: DoctorSettings;
  readonly agent: Fact<AgentFacts>;
  readonly config: Fact<NetworkConfig>;
  readonly registry: Fact<RegistryFacts>;
  /** null unless the node runs with --kube-subnet-mgr. */
  readonly kube: Fact<KubeFacts> | null;
  readonly underlay: Fact<UnderlayFacts>;
  /** Our lease: the registry's lease with our PublicIP, or our Node's podCIDR (else the agent's). */
  readonly ownLease: Lease | null;
  readonly subnetEnv: ReadSubnetEnv;
  /** Every link of the node's namespace. */
  readonly links: Fact<readonly LinkFacts[]>;
  /** Main-table IPv4 routes. */
  readonly routes: Fact<readonly Route[]>;
  /** Neighbours and FDB entries on the overlay device (vxlan backend). */
  readonly neighbours: Fact<readonly Neigh[]>;
  readonly fdb: Fact<readonly FdbEntry[]>;
  /** sysctl name (dotted, interface part kept) → value, null when absent. */
  readonly sysctls: Readonly<Record<string, string | null>>;
  readonly nft: Fact<NftFacts>;
  readonly cni: CniFacts;
  /** `ethtool -k <overlay>`: feature name → "on"/"off". */
  readonly offload: Fact<Readonly<Record<string, string>>>;
  readonly bpf: Fact<BpfFacts>;
  /** null when probes were not run (--no-probe, or nothing to probe). */
  readonly probes: readonly ProbeResult[] | null;
  /** Dual stack: the IPv6 side; absent or null when the network is IPv4 only. */
  readonly ipv6?: Ipv6Facts | null;
}
