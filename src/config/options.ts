/**
 * The options every command runs with, as typed values: what the agent, the registry
 * commands and doctor are given after the CLI parsed and validated the flags. Defaults
 * live here so the CLI, doctor and the agent agree on them.
 */

import type { LogFormat, LogLevel } from "../log.ts";
import type { Ip4 } from "./cidr.ts";
import type { Ip6 } from "./cidr6.ts";
import type { BackendName } from "./network.ts";

/** flanneld's default `--etcd-prefix`. */
export const DEFAULT_ETCD_PREFIX = "/coreos.com/network";
export const DEFAULT_SQLITE_PATH = "/var/lib/tartan/registry.db";
export const DEFAULT_SUBNET_FILE = "/run/flannel/subnet.env";
export const DEFAULT_HTTP = "127.0.0.1:8471";
export const DEFAULT_STATE_DIR = "/var/lib/tartan";
/** flanneld's --net-config-path with --kube-subnet-mgr (kube-flannel.yml mounts its ConfigMap there). */
export const DEFAULT_KUBE_NET_CONF = "/etc/kube-flannel/net-conf.json";
export const DECAP_MODES = ["auto", "xdp", "tc"] as const;
/** Where ebpf-vxlan decapsulates; auto picks tc on veth. */
export type DecapMode = (typeof DECAP_MODES)[number];

export type RegistryOptions =
  | { readonly kind: "sqlite"; readonly path: string }
  | {
      readonly kind: "etcd";
      readonly endpoints: string[];
      readonly prefix: string;
      readonly caFile?: string;
      readonly certFile?: string;
      readonly keyFile?: string;
      readonly username?: string;
      readonly password?: string;
    };

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export interface CommonOptions {
  readonly logLevel: LogLevel;
  readonly logFormat: LogFormat;
}

/** flanneld's Kubernetes subnet manager (--kube-subnet-mgr): leases are Nodes' podCIDRs. */
export interface KubeOptions {
  /** --kube-api-url: the API server, overriding the kubeconfig's; null = the kubeconfig's, or in-cluster. */
  readonly apiUrl: string | null;
  /** --kubeconfig-file; null = the pod's service account (in-cluster), unless apiUrl is given. */
  readonly kubeconfigFile: string | null;
  /** --kube-annotation-prefix (validated with flannel's rules). */
  readonly annotationPrefix: string;
  /** --set-node-network-unavailable: set the Node's NetworkUnavailable condition to False once up. */
  readonly setNodeNetworkUnavailable: boolean;
}

export interface AgentOptions extends CommonOptions {
  /** Where leases live; unused (the default) when `kube` is set. */
  readonly registry: RegistryOptions;
  /** Set with --kube-subnet-mgr: leases come from the Kubernetes API, not a registry. */
  readonly kube: KubeOptions | null;
  readonly netConfigPath: string | null;
  readonly backend: BackendName | null;
  readonly ifaces: string[];
  readonly ifaceRegex: string[];
  readonly ifaceCanReach: Ip4 | null;
  /** --iface-can-reach given an IPv6 address. */
  readonly ifaceCanReach6?: Ip6 | null;
  readonly publicIp: Ip4 | null;
  /** --public-ipv6: what a dual-stack lease publishes as PublicIPv6 (default: the interface's). */
  readonly publicIpv6?: Ip6 | null;
  readonly subnetFile: string;
  readonly ipMasq: boolean;
  readonly renewMarginMs: number;
  readonly healthz: HostPort | null;
  readonly http: HostPort;
  readonly nodeName: string;
  readonly leaseTtlMs: number;
  readonly bpffs: string;
  readonly decap: DecapMode;
  /** Where the node remembers which subnet it holds (survives reboots, unlike /run). */
  readonly stateDir: string;
}
