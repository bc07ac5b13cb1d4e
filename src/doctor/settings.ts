/**
 * Which settings doctor judges against. A flag given on the command line (or as a
 * FLANNELD_* variable) wins; else what the running agent reports at /v1/config (its
 * effective options: the node is judged by how it actually runs); else subnet.env
 * (for --ip-masq) and the agent's defaults. Pure.
 */

import { type Ip4, parseIp4 } from "../config/cidr.ts";
import { BACKENDS, type BackendName } from "../config/network.ts";
import type { AgentOptions, KubeOptions, RegistryOptions } from "../config/options.ts";
import type { ReadSubnetEnv } from "../config/subnet-env.ts";
import type { DoctorSettings } from "./facts.ts";

/** The agent flags doctor shares: given explicitly they win over what the agent reports. */
export const SHARED_SETTINGS = [
  "backend",
  "net-config-path",
  "iface",
  "iface-regex",
  "iface-can-reach",
  "public-ip",
  "subnet-file",
  "ip-masq",
  "http",
  "node-name",
  "bpffs",
  "registry",
  "etcd-endpoints",
  "etcd-prefix",
  "etcd-cafile",
  "etcd-certfile",
  "etcd-keyfile",
  "etcd-username",
  "etcd-password",
  "kube-subnet-mgr",
  "kube-api-url",
  "kubeconfig-file",
  "kube-annotation-prefix",
  "set-node-network-unavailable",
] as const;

export interface DoctorInput {
  /** The agent flags doctor shares, parsed and defaulted as the agent does. */
  readonly agent: AgentOptions;
  /** Names of the flags given explicitly (command line or FLANNELD_*). */
  readonly explicit: ReadonlySet<string>;
  readonly bridge: string;
  readonly cniConfDir: string;
}

export interface Resolved {
  readonly settings: DoctorSettings;
  readonly registry: RegistryOptions;
  /** Set when the node runs with --kube-subnet-mgr: leases come from the Kubernetes API. */
  readonly kube: KubeOptions | null;
  readonly netConfigPath: string | null;
  readonly iface: { readonly names: string[]; readonly regexes: string[]; readonly canReach: Ip4 | null };
  readonly publicIp: Ip4 | null;
}

const REGISTRY_FLAGS = [
  "registry",
  "etcd-endpoints",
  "etcd-prefix",
  "etcd-cafile",
  "etcd-certfile",
  "etcd-keyfile",
  "etcd-username",
  "etcd-password",
];

const KUBE_FLAGS = [
  "kube-subnet-mgr",
  "kube-api-url",
  "kubeconfig-file",
  "kube-annotation-prefix",
  "set-node-network-unavailable",
];

/** The agent's kube options from /v1/config, when they are whole. */
function agentKube(v: unknown): KubeOptions | null {
  if (!v || typeof v !== "object") return null;
  const k = v as Record<string, unknown>;
  const strOrNull = (x: unknown) => typeof x === "string" || x === null;
  if (
    !strOrNull(k.apiUrl) ||
    !strOrNull(k.kubeconfigFile) ||
    typeof k.annotationPrefix !== "string" ||
    typeof k.setNodeNetworkUnavailable !== "boolean"
  )
    return null;
  return k as unknown as KubeOptions;
}

function agentRegistry(v: unknown): RegistryOptions | null {
  if (!v || typeof v !== "object") return null;
  const r = v as Record<string, unknown>;
  if (r.kind === "sqlite" && typeof r.path === "string") return { kind: "sqlite", path: r.path };
  if (r.kind === "etcd" && Array.isArray(r.endpoints) && typeof r.prefix === "string") {
    const { password, ...rest } = r as unknown as RegistryOptions & { password?: string };
    // the agent redacts its password; a real one must come from a flag or FLANNELD_ETCD_PASSWORD
    return (password && password !== "<redacted>" ? { ...rest, password } : rest) as RegistryOptions;
  }
  return null;
}

export function resolveSettings(
  input: DoctorInput,
  agentOptions: Record<string, unknown> | null,
  agentBackend: BackendName | null,
  subnetEnv: (path: string) => ReadSubnetEnv,
): Resolved {
  const o = input.agent;
  const sources: Record<string, string> = {};
  const a = agentOptions ?? {};
  function pick<T>(name: string, flag: string | string[], fromFlag: T, fromAgent: T | undefined): T {
    const flags = Array.isArray(flag) ? flag : [flag];
    if (flags.some((f) => input.explicit.has(f))) {
      sources[name] = "flag";
      return fromFlag;
    }
    if (fromAgent !== undefined && fromAgent !== null) {
      sources[name] = "agent";
      return fromAgent;
    }
    sources[name] = "default";
    return fromFlag;
  }
  const str = (k: string) => (typeof a[k] === "string" ? (a[k] as string) : undefined);
  const strs = (k: string) => (Array.isArray(a[k]) ? (a[k] as string[]) : undefined);
  const ip = (k: string) => (typeof a[k] === "string" ? parseIp4(a[k] as string) : undefined);

  const agentBackendOpt = (BACKENDS as readonly string[]).includes(str("backend") ?? "")
    ? (str("backend") as BackendName)
    : (agentBackend ?? undefined);
  const backend = pick<BackendName | null>("backend", "backend", o.backend, agentBackendOpt);
  const subnetFile = pick("subnetFile", "subnet-file", o.subnetFile, str("subnetFile"));
  const nodeName = pick("nodeName", "node-name", o.nodeName, str("nodeName"));
  const bpffs = input.explicit.has("bpffs")
    ? pick("bpffs", "bpffs", o.bpffs, undefined)
    : pick("bpffs", "bpffs", `/sys/fs/bpf/tartan/${nodeName}`, str("bpffs"));
  let ipMasq: boolean;
  if (input.explicit.has("ip-masq")) {
    ipMasq = o.ipMasq;
    sources.ipMasq = "flag";
  } else if (typeof a.ipMasq === "boolean") {
    ipMasq = a.ipMasq;
    sources.ipMasq = "agent";
  } else {
    const env = subnetEnv(subnetFile);
    ipMasq = env.kind === "ok" ? env.env.ipMasq : o.ipMasq;
    sources.ipMasq = env.kind === "ok" ? "subnet.env" : "default";
  }
  const registry = pick("registry", REGISTRY_FLAGS, o.registry, agentRegistry(a.registry) ?? undefined);
  // an agent that answers says whether it runs with --kube-subnet-mgr (null: it does not)
  const kube = pick<KubeOptions | null>(
    "kube",
    KUBE_FLAGS,
    o.kube,
    agentOptions === null ? undefined : (agentKube(a.kube) ?? undefined),
  );
  const netConfigPath = pick("netConfigPath", "net-config-path", o.netConfigPath, str("netConfigPath"));
  const names = pick("iface", "iface", o.ifaces, strs("ifaces"));
  const regexes = pick("ifaceRegex", "iface-regex", o.ifaceRegex, strs("ifaceRegex"));
  const canReach = pick("ifaceCanReach", "iface-can-reach", o.ifaceCanReach, ip("ifaceCanReach"));
  const publicIp = pick("publicIp", "public-ip", o.publicIp, ip("publicIp"));
  return {
    settings: {
      nodeName,
      backend,
      subnetFile,
      ipMasq,
      bpffs,
      bridge: input.bridge,
      cniConfDir: input.cniConfDir,
      http: `${o.http.host === "0.0.0.0" ? "127.0.0.1" : o.http.host}:${o.http.port}`,
      sources,
    },
    registry,
    kube,
    netConfigPath,
    iface: { names, regexes, canReach },
    publicIp,
  };
}
