/**
 * The agent's flags and the registry flags the other commands share, each declared once
 * (flag-def.ts), and what they become: AgentOptions and RegistryOptions (config/options.ts).
 * A bad value is one line naming the flag, the value and what is allowed.
 */
import { hostname } from "node:os";
import { dirname } from "node:path";
import * as v from "valibot";
import { DEFAULT_BRIDGE } from "../cni/conf.ts";
import { formatIp4 } from "../config/cidr.ts";
import { BACKENDS } from "../config/network.ts";
import {
  type AgentOptions,
  type CommonOptions,
  DECAP_MODES,
  DEFAULT_ETCD_PREFIX,
  DEFAULT_HTTP,
  DEFAULT_KUBE_NET_CONF,
  DEFAULT_SQLITE_PATH,
  DEFAULT_STATE_DIR,
  DEFAULT_SUBNET_FILE,
  type KubeOptions,
  type RegistryOptions,
} from "../config/options.ts";
import { annotationPrefixProblem, DEFAULT_ANNOTATION_PREFIX } from "../kube/annotations.ts";
import { LOG_FORMATS, LOG_LEVELS } from "../log.ts";
import { ValidationError } from "../validation.ts";
import { noArguments } from "./command.ts";
import {
  booleanFlag,
  type FlagSet,
  type FlagValues,
  ignoredFlags,
  listFlag,
  stringFlag,
  validateFlags,
} from "./flag-def.ts";
import { type ParsedArgs, parseFlags } from "./flags.ts";
import { IGNORED_FLANNELD_FLAGS, REFUSED_FLANNELD_FLAGS, VERBOSITY_FLAG } from "./flanneld-compat.ts";
import {
  absolutePath,
  duration,
  hostPort,
  interfaceName,
  ipAddress,
  ipv4,
  ipv6,
  nonEmptyPath,
  oneOf,
  port,
  regexSource,
  wholeNumber,
} from "./values.ts";

export { parseDuration, parseHostPort } from "./values.ts";

const sqlitePath = v.pipe(
  v.string(),
  v.regex(/^sqlite:.+/, "must be sqlite:PATH (etcd is chosen with --etcd-endpoints)"),
);
const etcdEndpoints = v.pipe(
  v.string(),
  v.check(
    (s) => s.split(",").every((e) => /^https?:\/\/[^/\s]+\/?$/.test(e.trim())),
    "must be a comma-separated list of http(s)://HOST:PORT",
  ),
);
const keyPath = v.pipe(v.string(), v.regex(/^\/\S*$/, "must be a key path starting with /"));
const nodeName = v.pipe(
  v.string(),
  v.regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, "must be 1-63 letters, digits, '.', '_' or '-'"),
);

export const HELP_FLAG = {
  help: booleanFlag({ short: "h", help: "show this help" }),
} satisfies FlagSet;

export const LOG_FLAGS = {
  "log-level": stringFlag({
    default: "info",
    value: oneOf(LOG_LEVELS),
    help: `log level: ${LOG_LEVELS.join("|")}`,
  }),
  "log-format": stringFlag({
    default: "logfmt",
    value: oneOf(LOG_FORMATS),
    help: `log line format: ${LOG_FORMATS.join("|")}`,
  }),
} satisfies FlagSet;

export const COMMON_FLAGS = { ...LOG_FLAGS, ...HELP_FLAG } satisfies FlagSet;

/** The pod bridge the CNI plugin makes (doctor checks it, cleanup removes it). */
export const BRIDGE_FLAG = stringFlag({
  default: DEFAULT_BRIDGE,
  value: interfaceName,
  help: "the pod bridge the CNI plugin uses",
});

export const REGISTRY_FLAGS = {
  registry: stringFlag({
    // applied by registryOptions: given, it must not meet --etcd-endpoints
    shownDefault: `sqlite:${DEFAULT_SQLITE_PATH}`,
    value: sqlitePath,
    help: "the embedded registry, sqlite:PATH (used when no --etcd-endpoints is given)",
  }),
  "etcd-endpoints": stringFlag({
    env: true,
    value: etcdEndpoints,
    help: "comma-separated etcd endpoints, e.g. https://10.0.0.1:2379; selects the etcd registry",
  }),
  "etcd-prefix": stringFlag({
    env: true,
    default: DEFAULT_ETCD_PREFIX,
    value: keyPath,
    help: "etcd key prefix; flannel's key layout lives under it",
  }),
  "etcd-cafile": stringFlag({ env: true, help: "CA certificate file for etcd TLS" }),
  "etcd-certfile": stringFlag({ env: true, help: "client certificate file for etcd TLS" }),
  "etcd-keyfile": stringFlag({ env: true, help: "client key file for etcd TLS" }),
  "etcd-username": stringFlag({ env: true, help: "etcd user name" }),
  "etcd-password": stringFlag({ env: true, secret: true, help: "etcd password" }),
} satisfies FlagSet;

const apiUrl = v.pipe(
  v.string(),
  v.check((s) => {
    try {
      const u = new URL(s);
      return u.protocol === "https:" || u.protocol === "http:";
    } catch {
      return false;
    }
  }, "must be an http:// or https:// URL like https://10.0.0.1:6443"),
);
const annotationPrefix = v.pipe(
  v.string(),
  v.rawCheck(({ dataset, addIssue }) => {
    const why = dataset.typed ? annotationPrefixProblem(dataset.value) : null;
    if (why) addIssue({ message: why });
  }),
);

/**
 * flanneld's Kubernetes subnet manager: this node's subnet is its Node's podCIDR, and it
 * publishes itself in flannel's annotations on its Node (no etcd).
 */
export const KUBE_FLAGS = {
  "kube-subnet-mgr": booleanFlag({
    env: true,
    help: "take this node's subnet from its Kubernetes Node's podCIDR and publish flannel's annotations on the Node (no etcd)",
  }),
  "kube-api-url": stringFlag({
    env: true,
    value: apiUrl,
    shownDefault: "the kubeconfig's server, or in-cluster",
    help: "Kubernetes API server URL (with --kube-subnet-mgr)",
  }),
  "kubeconfig-file": stringFlag({
    env: true,
    value: nonEmptyPath,
    shownDefault: "the pod's service account",
    help: "kubeconfig file for the Kubernetes API (with --kube-subnet-mgr)",
  }),
  "kube-annotation-prefix": stringFlag({
    env: true,
    default: DEFAULT_ANNOTATION_PREFIX,
    value: annotationPrefix,
    help: "prefix of flannel's Node annotations (flannel's rules: a domain, optionally /word)",
  }),
  "set-node-network-unavailable": booleanFlag({
    env: true,
    default: true,
    help: "set the Node's NetworkUnavailable condition to False (FlannelIsUp) once the node has its subnet",
  }),
} satisfies FlagSet;

/** flanneld's flags that Tartan implements, under flanneld's names and FLANNELD_* variables. */
export const FLANNELD_AGENT_FLAGS = {
  iface: listFlag({
    env: true,
    shownDefault: "the default route's interface",
    help: "underlay interface (name, IPv4 or IPv6 address) for inter-node traffic; repeatable, first match wins",
  }),
  "iface-regex": listFlag({
    env: true,
    item: regexSource,
    help: "regex matched against interface names and addresses; repeatable",
  }),
  "iface-can-reach": stringFlag({
    env: true,
    value: ipAddress,
    help: "use the interface the kernel routes this IPv4 or IPv6 address through",
  }),
  "public-ip": stringFlag({
    env: true,
    value: ipv4,
    shownDefault: "the interface's address",
    help: "IPv4 address other nodes reach this node at",
  }),
  "public-ipv6": stringFlag({
    env: true,
    value: ipv6,
    shownDefault: "the interface's IPv6 address",
    help: "IPv6 address other nodes reach this node at (dual stack: EnableIPv6)",
  }),
  "subnet-file": stringFlag({
    env: true,
    default: DEFAULT_SUBNET_FILE,
    value: nonEmptyPath,
    help: "where subnet.env is written",
  }),
  "ip-masq": booleanFlag({
    env: true,
    help: "masquerade traffic leaving the cluster network (nft table ip tartan)",
  }),
  "subnet-lease-renew-margin": stringFlag({
    env: true,
    default: "60",
    value: wholeNumber(1, Number.MAX_SAFE_INTEGER, "a whole number of minutes ≥ 1"),
    help: "minutes before expiry to renew the lease (capped at half the TTL)",
  }),
  "healthz-ip": stringFlag({
    env: true,
    default: "0.0.0.0",
    value: ipv4,
    help: "address of the extra flanneld-style /healthz listener",
  }),
  "healthz-port": stringFlag({
    env: true,
    default: "0",
    value: port,
    help: "port of the extra flanneld-style /healthz listener (0 = off)",
  }),
  "net-config-path": stringFlag({
    env: true,
    value: nonEmptyPath,
    shownDefault: `${DEFAULT_KUBE_NET_CONF} with --kube-subnet-mgr`,
    help: "read the network config from this file instead of the registry",
  }),
  ...VERBOSITY_FLAG,
  version: booleanFlag({ env: true, help: "print the version and exit" }),
} satisfies FlagSet;

/** Tartan's own agent flags. */
export const TARTAN_AGENT_FLAGS = {
  backend: stringFlag({
    value: oneOf(BACKENDS),
    shownDefault: "the network config's Backend.Type",
    help: `datapath: ${BACKENDS.join(", ")} (alloc: lease only)`,
  }),
  http: stringFlag({
    default: DEFAULT_HTTP,
    value: hostPort,
    help: "HOST:PORT of the status endpoint (/healthz /readyz /v1/* /metrics)",
  }),
  "node-name": stringFlag({
    shownDefault: "the host name; with --kube-subnet-mgr NODE_NAME, else the pod's Node",
    value: nodeName,
    help: "this node's name in logs, status and its pin directory (with --kube-subnet-mgr: its Node's name)",
  }),
  "lease-ttl": stringFlag({
    default: "24h",
    value: duration(1000, "1s, like 24h, 90m or 30s"),
    help: "lease lifetime: 24h, 90m, 1h30m, 30s, …",
  }),
  bpffs: stringFlag({
    shownDefault: "/sys/fs/bpf/tartan/<node-name>",
    value: absolutePath,
    help: "bpffs directory of the eBPF datapath's pinned maps and programs",
  }),
  decap: stringFlag({
    default: "auto",
    value: oneOf(DECAP_MODES),
    help: "where ebpf-vxlan decapsulates: tc, xdp, or auto (tc on veth)",
  }),
  "state-dir": stringFlag({
    shownDefault: "the sqlite registry's directory, or /var/lib/tartan",
    value: absolutePath,
    help: "where this node records the subnet it holds, so a reboot (which empties /run) keeps it",
  }),
} satisfies FlagSet;

/** Every flag `tartan agent` takes, in the order its help lists them. */
export const AGENT_FLAGS = {
  ...TARTAN_AGENT_FLAGS,
  ...KUBE_FLAGS,
  ...FLANNELD_AGENT_FLAGS,
  ...REGISTRY_FLAGS,
  ...LOG_FLAGS,
  ...REFUSED_FLANNELD_FLAGS,
  ...IGNORED_FLANNELD_FLAGS,
  ...HELP_FLAG,
} satisfies FlagSet;

type RegistryValues = FlagValues<typeof REGISTRY_FLAGS>;

export function registryOptions(o: RegistryValues): RegistryOptions {
  const endpoints = o["etcd-endpoints"];
  if (endpoints && o.registry)
    throw new ValidationError(
      `--registry=${o.registry} and --etcd-endpoints=${endpoints} both choose a registry: give one of them`,
    );
  if (endpoints) {
    const certs = [o["etcd-certfile"], o["etcd-keyfile"]].filter(Boolean).length;
    if (certs === 1)
      throw new ValidationError("--etcd-certfile and --etcd-keyfile go together: give both or neither");
    return {
      kind: "etcd",
      endpoints: endpoints.split(",").map((e) => e.trim()),
      prefix: o["etcd-prefix"].replace(/\/+$/, "") || "/",
      ...(o["etcd-cafile"] ? { caFile: o["etcd-cafile"] } : {}),
      ...(o["etcd-certfile"] ? { certFile: o["etcd-certfile"] } : {}),
      ...(o["etcd-keyfile"] ? { keyFile: o["etcd-keyfile"] } : {}),
      ...(o["etcd-username"] ? { username: o["etcd-username"] } : {}),
      ...(o["etcd-password"] ? { password: o["etcd-password"] } : {}),
    };
  }
  return { kind: "sqlite", path: (o.registry ?? `sqlite:${DEFAULT_SQLITE_PATH}`).slice("sqlite:".length) };
}

export interface ParsedAgentOptions extends AgentOptions {
  readonly help: boolean;
  readonly version: boolean;
  /** Flags that came from FLANNELD_* variables, for the start-up log. */
  readonly fromEnv: string[];
  /** flanneld flags given that Tartan accepts and ignores, with why, for the start-up log. */
  readonly ignored: { flag: string; why: string }[];
  /**
   * --kube-subnet-mgr with neither NODE_NAME nor --node-name: our Node is this pod's
   * spec.nodeName, to be read from the API; until then `nodeName` is the host name. The
   * caller looks it up and derives the options again with `kubeNodeName`.
   */
  readonly kubeNodeFromPod: { readonly namespace: string; readonly pod: string } | null;
}

/** A Kubernetes object name (DNS-1123 subdomain): also safe in a file or pin path. */
const DNS1123_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

type KubeNode = { name: string } | { pod: { namespace: string; pod: string } };

/**
 * Which Node we are with --kube-subnet-mgr, as flanneld finds it: NODE_NAME, else this pod
 * (POD_NAME and POD_NAMESPACE) → its spec.nodeName; outside a pod, Tartan's --node-name
 * (given, it is used without asking the API; one that contradicts NODE_NAME is an error).
 * The host name is never guessed, as flanneld never does: annotating another Node would
 * break that node.
 */
function kubeNode(env: Readonly<Record<string, string | undefined>>, flag: string | undefined): KubeNode {
  const fromEnv = env.NODE_NAME;
  if (fromEnv) {
    if (!DNS1123_SUBDOMAIN.test(fromEnv))
      throw new ValidationError(
        `NODE_NAME=${JSON.stringify(fromEnv)}: not a Kubernetes Node name (lowercase letters, digits, '-' and '.')`,
      );
    if (flag !== undefined && flag !== fromEnv)
      throw new ValidationError(
        `--node-name=${flag} and NODE_NAME=${fromEnv} name different Nodes: give one of them`,
      );
    return { name: fromEnv };
  }
  if (env.POD_NAME && env.POD_NAMESPACE && flag === undefined)
    return { pod: { namespace: env.POD_NAMESPACE, pod: env.POD_NAME } };
  if (flag !== undefined) return { name: flag };
  throw new ValidationError(
    "--kube-subnet-mgr: cannot tell which Node this is: set NODE_NAME (the downward API's spec.nodeName), or POD_NAME and POD_NAMESPACE, or give --node-name",
  );
}

function kubeOptions(o: FlagValues<typeof AGENT_FLAGS>, flags: ParsedArgs["flags"]): KubeOptions | null {
  if (!o["kube-subnet-mgr"]) return null;
  for (const other of ["etcd-endpoints", "registry"] as const)
    if (flags[other] !== undefined)
      throw new ValidationError(
        `--kube-subnet-mgr and --${other}=${flags[other]} both choose where leases live: give one of them (the Kubernetes API keeps them in Node annotations)`,
      );
  return {
    apiUrl: o["kube-api-url"] ?? null,
    kubeconfigFile: o["kubeconfig-file"] ?? null,
    annotationPrefix: o["kube-annotation-prefix"],
    setNodeNetworkUnavailable: o["set-node-network-unavailable"],
  };
}

/**
 * AgentOptions from parsed agent flags (`tartan agent`, and doctor for the flags it
 * shares). `env` supplies NODE_NAME, POD_NAME and POD_NAMESPACE with --kube-subnet-mgr;
 * `kubeNodeName` is our Node's name once read from our pod (see kubeNodeFromPod).
 */
export function agentOptionsFrom(
  p: ParsedArgs,
  env: Readonly<Record<string, string | undefined>> = process.env,
  kubeNodeName?: string,
): ParsedAgentOptions {
  noArguments("agent", p.positionals);
  const o = validateFlags(AGENT_FLAGS, p.flags, p.fromEnv);
  const kube = kubeOptions(o, p.flags);
  const found = kube && !kubeNodeName ? kubeNode(env, o["node-name"]) : null;
  const hostName = hostname().split(".")[0] ?? "node";
  const node =
    kube && kubeNodeName
      ? kubeNodeName
      : found && "name" in found
        ? found.name
        : (o["node-name"] ?? hostName);
  const registry = registryOptions(o);
  const reach = o["iface-can-reach"];
  // glog's -v: an explicit --log-level wins
  const logLevel =
    p.flags["log-level"] === undefined && o.v !== undefined && o.v >= 1 ? "debug" : o["log-level"];
  return {
    help: o.help,
    version: o.version,
    fromEnv: p.fromEnv,
    ignored: ignoredFlags(AGENT_FLAGS, p.flags, p.fromEnv),
    kubeNodeFromPod: found && "pod" in found ? found.pod : null,
    logLevel,
    logFormat: o["log-format"],
    registry,
    kube,
    netConfigPath: o["net-config-path"] ?? (kube ? DEFAULT_KUBE_NET_CONF : null),
    backend: o.backend ?? null,
    ifaces: o.iface,
    ifaceRegex: o["iface-regex"],
    ifaceCanReach: reach && "v4" in reach ? reach.v4 : null,
    ifaceCanReach6: reach && "v6" in reach ? reach.v6 : null,
    publicIp: o["public-ip"] ?? null,
    publicIpv6: o["public-ipv6"] ?? null,
    subnetFile: o["subnet-file"],
    ipMasq: o["ip-masq"],
    renewMarginMs: o["subnet-lease-renew-margin"] * 60_000,
    healthz: o["healthz-port"] === 0 ? null : { host: formatIp4(o["healthz-ip"]), port: o["healthz-port"] },
    http: o.http,
    nodeName: node,
    leaseTtlMs: o["lease-ttl"],
    bpffs: o.bpffs ?? `/sys/fs/bpf/tartan/${node}`,
    decap: o.decap,
    stateDir:
      o["state-dir"] ?? (registry.kind === "sqlite" && !kube ? dirname(registry.path) : DEFAULT_STATE_DIR),
  };
}

export function parseAgentOptions(
  argv: readonly string[],
  env: Record<string, string | undefined> = process.env,
): ParsedAgentOptions {
  return agentOptionsFrom(parseFlags("agent", argv, AGENT_FLAGS, env), env);
}

// ---- the registry commands (leases, config) ---------------------------------------------

export const REGISTRY_COMMAND_FLAGS = {
  ...REGISTRY_FLAGS,
  json: booleanFlag({ help: "print JSON instead of a table" }),
  ...COMMON_FLAGS,
} satisfies FlagSet;

export interface RegistryCommandOptions extends CommonOptions {
  readonly registry: RegistryOptions;
  readonly json: boolean;
  readonly help: boolean;
  readonly positionals: string[];
}

export function registryCommandOptions(p: ParsedArgs): RegistryCommandOptions {
  const o = validateFlags(REGISTRY_COMMAND_FLAGS, p.flags, p.fromEnv);
  return {
    logLevel: o["log-level"],
    logFormat: o["log-format"],
    registry: registryOptions(o),
    json: o.json,
    help: o.help,
    positionals: p.positionals,
  };
}

export function parseRegistryCommand(
  command: string,
  argv: readonly string[],
  env: Record<string, string | undefined> = process.env,
): RegistryCommandOptions {
  return registryCommandOptions(parseFlags(command, argv, REGISTRY_COMMAND_FLAGS, env));
}
