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
  DEFAULT_SQLITE_PATH,
  DEFAULT_STATE_DIR,
  DEFAULT_SUBNET_FILE,
  type RegistryOptions,
} from "../config/options.ts";
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
import {
  IGNORED_FLANNELD_FLAGS,
  KUBE_FLAGS,
  REFUSED_FLANNELD_FLAGS,
  VERBOSITY_FLAG,
} from "./flanneld-compat.ts";
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
    shownDefault: "the host name",
    value: nodeName,
    help: "this node's name in logs, status and its pin directory",
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
  ...FLANNELD_AGENT_FLAGS,
  ...REGISTRY_FLAGS,
  ...LOG_FLAGS,
  ...KUBE_FLAGS,
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
}

/** AgentOptions from parsed agent flags (`tartan agent`, and doctor for the flags it shares). */
export function agentOptionsFrom(p: ParsedArgs): ParsedAgentOptions {
  noArguments("agent", p.positionals);
  const o = validateFlags(AGENT_FLAGS, p.flags, p.fromEnv);
  const node = o["node-name"] ?? hostname().split(".")[0] ?? "node";
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
    logLevel,
    logFormat: o["log-format"],
    registry,
    netConfigPath: o["net-config-path"] ?? null,
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
    stateDir: o["state-dir"] ?? (registry.kind === "sqlite" ? dirname(registry.path) : DEFAULT_STATE_DIR),
  };
}

export function parseAgentOptions(
  argv: readonly string[],
  env: Record<string, string | undefined> = process.env,
): ParsedAgentOptions {
  return agentOptionsFrom(parseFlags("agent", argv, AGENT_FLAGS, env));
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
