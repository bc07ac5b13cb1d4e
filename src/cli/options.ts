/**
 * Every command's flags: definitions (for parsing and --help) and the valibot schemas
 * that turn raw strings into typed options. A bad value is one line naming the flag,
 * the value and what is allowed.
 */
import { hostname } from "node:os";
import { dirname } from "node:path";
import * as v from "valibot";
import { type Ip4, parseIp4 } from "../config/cidr.ts";
import { BACKENDS, type BackendName } from "../config/network.ts";
import {
  type AgentOptions,
  type CommonOptions,
  DECAP_MODES,
  DEFAULT_ETCD_PREFIX,
  DEFAULT_HTTP,
  DEFAULT_SQLITE_PATH,
  DEFAULT_STATE_DIR,
  DEFAULT_SUBNET_FILE,
  type HostPort,
  type RegistryOptions,
} from "../config/options.ts";
import { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from "../log.ts";
import { ValidationError } from "../validation.ts";
import { type FlagDef, parseFlags, type RawFlags } from "./flags.ts";

// ---- flag definitions ---------------------------------------------------------------

export const COMMON_FLAGS: FlagDef[] = [
  { name: "log-level", kind: "string", default: "info", help: `log level: ${LOG_LEVELS.join("|")}` },
  {
    name: "log-format",
    kind: "string",
    default: "logfmt",
    help: `log line format: ${LOG_FORMATS.join("|")}`,
  },
  { name: "help", kind: "boolean", short: "h", help: "show this help" },
];

export const REGISTRY_FLAGS: FlagDef[] = [
  {
    name: "registry",
    kind: "string",
    default: `sqlite:${DEFAULT_SQLITE_PATH}`,
    help: "embedded registry file, sqlite:PATH (used when no --etcd-endpoints is given)",
  },
  {
    name: "etcd-endpoints",
    kind: "string",
    env: true,
    help: "comma-separated etcd endpoints, e.g. https://10.0.0.1:2379 (selects etcd)",
  },
  {
    name: "etcd-prefix",
    kind: "string",
    env: true,
    default: DEFAULT_ETCD_PREFIX,
    help: "etcd key prefix (flannel's layout under it)",
  },
  { name: "etcd-cafile", kind: "string", env: true, help: "CA certificate file for etcd TLS" },
  { name: "etcd-certfile", kind: "string", env: true, help: "client certificate file for etcd TLS" },
  { name: "etcd-keyfile", kind: "string", env: true, help: "client key file for etcd TLS" },
  { name: "etcd-username", kind: "string", env: true, help: "etcd user name" },
  { name: "etcd-password", kind: "string", env: true, secret: true, help: "etcd password" },
];

export const AGENT_FLAGS: FlagDef[] = [
  {
    name: "backend",
    kind: "string",
    help: `datapath: ${BACKENDS.join("|")} (default: the network config's Backend.Type)`,
  },
  {
    name: "net-config-path",
    kind: "string",
    env: true,
    help: "read the network config from this file instead of the registry",
  },
  {
    name: "iface",
    kind: "list",
    env: true,
    help: "interface (name or IPv4) for inter-node traffic; repeatable, first match wins",
  },
  {
    name: "iface-regex",
    kind: "list",
    env: true,
    help: "regex matched against interface names and IPs; repeatable",
  },
  {
    name: "iface-can-reach",
    kind: "string",
    env: true,
    help: "use the interface the kernel routes to this IPv4 address through",
  },
  {
    name: "public-ip",
    kind: "string",
    env: true,
    help: "IPv4 address other nodes reach this node at (default: the interface's)",
  },
  {
    name: "subnet-file",
    kind: "string",
    env: true,
    default: DEFAULT_SUBNET_FILE,
    help: "where to write the subnet environment file",
  },
  {
    name: "ip-masq",
    kind: "boolean",
    env: true,
    default: "false",
    help: "masquerade traffic leaving the cluster network",
  },
  {
    name: "subnet-lease-renew-margin",
    kind: "string",
    env: true,
    default: "60",
    help: "renew the lease this many minutes before it expires (capped at half the TTL)",
  },
  {
    name: "healthz-ip",
    kind: "string",
    env: true,
    default: "0.0.0.0",
    help: "address for the flanneld-style /healthz listener",
  },
  {
    name: "healthz-port",
    kind: "string",
    env: true,
    default: "0",
    help: "port for the flanneld-style /healthz listener (0 = off)",
  },
  {
    name: "http",
    kind: "string",
    default: DEFAULT_HTTP,
    help: "HOST:PORT of the status endpoint (/healthz /readyz /v1/* /metrics)",
  },
  { name: "node-name", kind: "string", help: "this node's name (default: the host name)" },
  { name: "lease-ttl", kind: "string", default: "24h", help: "lease lifetime, e.g. 24h, 90m, 30s" },
  {
    name: "bpffs",
    kind: "string",
    help: "bpffs directory for pinned maps and programs (default /sys/fs/bpf/tartan/<node-name>)",
  },
  {
    name: "decap",
    kind: "string",
    default: "auto",
    help: `ebpf-vxlan decapsulation hook: ${DECAP_MODES.join("|")}`,
  },
  {
    name: "state-dir",
    kind: "string",
    help: "where this node records the subnet it holds, so a reboot keeps it (default: the sqlite registry's directory, or /var/lib/tartan)",
  },
];

// ---- value schemas -----------------------------------------------------------------

const ipv4 = (flag: string) =>
  v.pipe(
    v.string(),
    v.check((s) => parseIp4(s) !== null, `--${flag} must be an IPv4 address like 198.18.0.1`),
    v.transform((s) => parseIp4(s)!),
  );

const port = (flag: string) =>
  v.pipe(
    v.string(),
    v.check((s) => /^\d{1,5}$/.test(s) && Number(s) <= 65535, `--${flag} must be a port number 0..65535`),
    v.transform(Number),
  );

/** Go-style durations: 24h, 90m, 30s, 1h30m, 500ms. */
export function parseDuration(s: string): number | null {
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(s)) return null;
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  for (const m of s.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) total += Number(m[1]) * unit[m[2]!]!;
  return total;
}

export function parseHostPort(s: string): HostPort | null {
  const m = /^(.*):(\d{1,5})$/.exec(s);
  if (!m || Number(m[2]) > 65535) return null;
  const host = m[1]!.replace(/^\[(.*)\]$/, "$1");
  if (host !== "" && host !== "localhost" && parseIp4(host) === null && !host.includes(":")) return null;
  return { host: host === "" ? "0.0.0.0" : host, port: Number(m[2]) };
}

const CommonSchema = {
  "log-level": v.optional(
    v.picklist(LOG_LEVELS, `--log-level must be one of ${LOG_LEVELS.join(", ")}`),
    "info",
  ),
  "log-format": v.optional(
    v.picklist(LOG_FORMATS, `--log-format must be one of ${LOG_FORMATS.join(", ")}`),
    "logfmt",
  ),
};

const RegistrySchema = {
  registry: v.optional(
    v.pipe(
      v.string(),
      v.regex(/^sqlite:.+/, "--registry must be sqlite:PATH (etcd is chosen with --etcd-endpoints)"),
    ),
  ),
  "etcd-endpoints": v.optional(
    v.pipe(
      v.string(),
      v.check(
        (s) => s.split(",").every((e) => /^https?:\/\/[^/\s]+\/?$/.test(e.trim())),
        "--etcd-endpoints must be a comma-separated list of http(s)://HOST:PORT",
      ),
    ),
  ),
  "etcd-prefix": v.optional(
    v.pipe(v.string(), v.regex(/^\/\S*$/, "--etcd-prefix must be a key path starting with /")),
    DEFAULT_ETCD_PREFIX,
  ),
  "etcd-cafile": v.optional(v.string()),
  "etcd-certfile": v.optional(v.string()),
  "etcd-keyfile": v.optional(v.string()),
  "etcd-username": v.optional(v.string()),
  "etcd-password": v.optional(v.string()),
};

const AgentSchema = v.object({
  ...CommonSchema,
  ...RegistrySchema,
  backend: v.optional(v.picklist(BACKENDS, `--backend must be one of ${BACKENDS.join(", ")}`)),
  "net-config-path": v.optional(v.string()),
  iface: v.optional(v.array(v.string()), []),
  "iface-regex": v.optional(
    v.array(
      v.pipe(
        v.string(),
        v.check((s) => {
          try {
            new RegExp(s);
            return true;
          } catch {
            return false;
          }
        }, "--iface-regex must be a valid regular expression"),
      ),
    ),
    [],
  ),
  "iface-can-reach": v.optional(ipv4("iface-can-reach")),
  "public-ip": v.optional(ipv4("public-ip")),
  "subnet-file": v.optional(
    v.pipe(v.string(), v.minLength(1, "--subnet-file must be a path")),
    DEFAULT_SUBNET_FILE,
  ),
  "ip-masq": v.optional(v.boolean(), false),
  "subnet-lease-renew-margin": v.optional(
    v.pipe(
      v.string(),
      v.check(
        (s) => /^\d+$/.test(s) && Number(s) >= 1,
        "--subnet-lease-renew-margin must be a whole number of minutes ≥ 1",
      ),
      v.transform((s) => Number(s) * 60_000),
    ),
    "60",
  ),
  "healthz-ip": v.optional(ipv4("healthz-ip"), "0.0.0.0"),
  "healthz-port": v.optional(port("healthz-port"), "0"),
  http: v.optional(
    v.pipe(
      v.string(),
      v.check(
        (s) => parseHostPort(s) !== null,
        "--http must be HOST:PORT with an IPv4 host, e.g. 127.0.0.1:8471",
      ),
      v.transform((s) => parseHostPort(s)!),
    ),
    DEFAULT_HTTP,
  ),
  "node-name": v.optional(
    v.pipe(
      v.string(),
      v.regex(
        /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/,
        "--node-name must be 1-63 letters, digits, '.', '_' or '-'",
      ),
    ),
  ),
  "lease-ttl": v.optional(
    v.pipe(
      v.string(),
      v.check(
        (s) => (parseDuration(s) ?? 0) >= 1000,
        "--lease-ttl must be a duration of at least 1s, like 24h, 90m or 30s",
      ),
      v.transform((s) => parseDuration(s)!),
    ),
    "24h",
  ),
  bpffs: v.optional(v.pipe(v.string(), v.regex(/^\//, "--bpffs must be an absolute path"))),
  decap: v.optional(v.picklist(DECAP_MODES, `--decap must be one of ${DECAP_MODES.join(", ")}`), "auto"),
  "state-dir": v.optional(v.pipe(v.string(), v.regex(/^\//, "--state-dir must be an absolute path"))),
  help: v.optional(v.boolean()),
});

/** One line per bad flag: `--backend=foo: --backend must be one of …`. */
export function validateFlags<S extends v.GenericSchema>(schema: S, flags: RawFlags): v.InferOutput<S> {
  const r = v.safeParse(schema, flags);
  if (r.success) return r.output;
  const issue = r.issues[0];
  const flag = v.getDotPath(issue)?.split(".")[0] ?? "";
  const raw = flags[flag];
  const shown = Array.isArray(raw) ? raw.join(",") : String(raw);
  const msg = issue.message.startsWith("--") ? issue.message.replace(/^--[a-z-]+ /, "") : issue.message;
  throw new ValidationError(`--${flag}=${shown}: ${msg}`);
}

export function registryOptions(
  o: v.InferOutput<v.ObjectSchema<typeof RegistrySchema, undefined>>,
): RegistryOptions {
  if (o["etcd-endpoints"] && o.registry)
    throw new ValidationError(
      `--registry=${o.registry} and --etcd-endpoints=${o["etcd-endpoints"]} both choose a registry: give one of them`,
    );
  if (o["etcd-endpoints"]) {
    const certs = [o["etcd-certfile"], o["etcd-keyfile"]].filter(Boolean).length;
    if (certs === 1)
      throw new ValidationError("--etcd-certfile and --etcd-keyfile go together: give both or neither");
    return {
      kind: "etcd",
      endpoints: o["etcd-endpoints"].split(",").map((e) => e.trim()),
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

export const ALL_AGENT_FLAGS = [...AGENT_FLAGS, ...REGISTRY_FLAGS, ...COMMON_FLAGS];

export function parseAgentOptions(
  argv: readonly string[],
  env: Record<string, string | undefined> = process.env,
): AgentOptions & { help: boolean; fromEnv: string[] } {
  const { flags, positionals, fromEnv } = parseFlags("agent", argv, ALL_AGENT_FLAGS, env);
  if (positionals.length > 0)
    throw new ValidationError(`tartan agent takes no arguments (got ${JSON.stringify(positionals[0])})`);
  const o = validateFlags(AgentSchema, flags);
  const nodeName = o["node-name"] ?? hostname().split(".")[0] ?? "node";
  const registry = registryOptions(o);
  return {
    help: o.help ?? false,
    fromEnv,
    logLevel: o["log-level"],
    logFormat: o["log-format"],
    registry,
    netConfigPath: o["net-config-path"] ?? null,
    backend: o.backend ?? null,
    ifaces: o.iface,
    ifaceRegex: o["iface-regex"],
    ifaceCanReach: o["iface-can-reach"] ?? null,
    publicIp: o["public-ip"] ?? null,
    subnetFile: o["subnet-file"],
    ipMasq: o["ip-masq"],
    renewMarginMs: o["subnet-lease-renew-margin"],
    healthz:
      o["healthz-port"] === 0
        ? null
        : { host: o["healthz-ip"] === 0 ? "0.0.0.0" : formatHost(o["healthz-ip"]), port: o["healthz-port"] },
    http: o.http,
    nodeName,
    leaseTtlMs: o["lease-ttl"],
    bpffs: o.bpffs ?? `/sys/fs/bpf/tartan/${nodeName}`,
    decap: o.decap,
    stateDir: o["state-dir"] ?? (registry.kind === "sqlite" ? dirname(registry.path) : DEFAULT_STATE_DIR),
  };
}

function formatHost(ip: Ip4 | string): string {
  if (typeof ip === "string") return ip;
  return `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;
}

// ---- the smaller commands ------------------------------------------------------------

const RegistryCommandSchema = v.object({
  ...CommonSchema,
  ...RegistrySchema,
  json: v.optional(v.boolean(), false),
  help: v.optional(v.boolean()),
});

export const REGISTRY_COMMAND_FLAGS: FlagDef[] = [
  ...REGISTRY_FLAGS,
  { name: "json", kind: "boolean", help: "print JSON instead of a table" },
  ...COMMON_FLAGS,
];

export interface RegistryCommandOptions extends CommonOptions {
  readonly registry: RegistryOptions;
  readonly json: boolean;
  readonly help: boolean;
  readonly positionals: string[];
}

export function parseRegistryCommand(
  command: string,
  argv: readonly string[],
  env: Record<string, string | undefined> = process.env,
): RegistryCommandOptions {
  const { flags, positionals } = parseFlags(command, argv, REGISTRY_COMMAND_FLAGS, env);
  const o = validateFlags(RegistryCommandSchema, flags);
  return {
    logLevel: o["log-level"],
    logFormat: o["log-format"],
    registry: registryOptions(o),
    json: o.json,
    help: o.help ?? false,
    positionals,
  };
}
