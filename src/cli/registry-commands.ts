/**
 * `tartan leases [delete SUBNET]`, `tartan config get`, `tartan config set FILE`: read and
 * write the registry directly (sqlite file or etcd), with flannel's validation. Readers
 * never create anything: a registry file that is not there is an error saying how to make one.
 */
import { readFileSync } from "node:fs";
import {
  type Cidr,
  cidrEquals,
  cidrToKey,
  formatCidr,
  formatIp4,
  keyToCidr,
  parseCidr,
} from "../config/cidr.ts";
import { formatCidr6, formatIp6 } from "../config/cidr6.ts";
import { type NetworkConfig, parseNetworkConfig } from "../config/network.ts";
import type { RegistryOptions } from "../config/options.ts";
import { parseSubnetKey } from "../config/subnet-key.ts";
import { decodeLeaseRecord } from "../lease/lease.ts";
import type { Logger } from "../log.ts";
import { openRegistry } from "../registry/index.ts";
import type { Registry, RegistryRecord } from "../registry/registry.ts";
import { RegistryMissingError } from "../registry/sqlite.ts";
import { ValidationError } from "../validation.ts";
import type { Command, Io } from "./command.ts";
import { REGISTRY_COMMAND_FLAGS, type RegistryCommandOptions, registryCommandOptions } from "./options.ts";
import { table } from "./table.ts";

/** The flags that name this registry, for the hints in messages. */
function registryFlags(r: RegistryOptions): string {
  return r.kind === "sqlite" ? `--registry=sqlite:${r.path}` : `--etcd-endpoints=${r.endpoints.join(",")}`;
}

/** Opens an existing registry; a missing sqlite file is the user's to fix (exit 2). */
async function openExisting(o: RegistryCommandOptions, log: Logger): Promise<Registry> {
  try {
    return await openRegistry(o.registry, log, { create: false });
  } catch (e) {
    if (e instanceof RegistryMissingError) throw new ValidationError(e.message);
    throw e;
  }
}

async function withRegistry<T>(reg: Registry, fn: (reg: Registry) => Promise<T>): Promise<T> {
  try {
    return await fn(reg);
  } finally {
    await reg.close();
  }
}

export interface LeaseRow {
  readonly key: string;
  readonly subnet: string;
  /** Dual stack: the IPv6 subnet (absent in an IPv4-only lease). */
  readonly subnet6?: string;
  readonly publicIp: string | null;
  /** Dual stack: PublicIPv6 (absent when the lease publishes none). */
  readonly publicIpv6?: string;
  readonly backendType: string | null;
  readonly vtepMac: string | null;
  readonly expiresAt: string | null;
  readonly valid: boolean;
  readonly reason: string | null;
  readonly value?: string;
}

function leaseRow(r: RegistryRecord, cfg: NetworkConfig | null): LeaseRow {
  const d = cfg ? decodeLeaseRecord(r, cfg) : null;
  const base = { key: r.key, expiresAt: r.expiresAt === null ? null : new Date(r.expiresAt).toISOString() };
  if (d?.ok) {
    const sn6 = d.lease.subnet6 ?? null;
    const pub6 = d.lease.attrs.publicIpv6 ?? null;
    return {
      ...base,
      subnet: formatCidr(d.lease.subnet),
      ...(sn6 !== null ? { subnet6: formatCidr6(sn6) } : {}),
      publicIp: formatIp4(d.lease.attrs.publicIp),
      ...(pub6 !== null ? { publicIpv6: formatIp6(pub6) } : {}),
      backendType: d.lease.attrs.backendType,
      vtepMac: d.lease.attrs.vxlan?.VtepMAC ?? null,
      valid: true,
      reason: null,
    };
  }
  return {
    ...base,
    subnet: r.key,
    publicIp: null,
    backendType: null,
    vtepMac: null,
    valid: false,
    reason: d ? d.reason : "no network config to validate against",
    value: r.value,
  };
}

/** Subnets in address order (10.244.2.0 before 10.244.10.0); keys that are no subnet last. */
export function bySubnet(a: { key: string }, b: { key: string }): number {
  const ka = parseSubnetKey(a.key)?.v4;
  const kb = parseSubnetKey(b.key)?.v4;
  if (ka && kb) return ka.ip - kb.ip || ka.len - kb.len;
  if (ka || kb) return ka ? -1 : 1;
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

async function listLeases(o: RegistryCommandOptions, io: Io): Promise<number> {
  return withRegistry(await openExisting(o, io.log), async (reg) => {
    const raw = await reg.getConfig();
    const cfg = raw === null ? null : parseNetworkConfig(raw);
    const { records, revision } = await reg.list();
    const rows = [...records].sort(bySubnet).map((r) => leaseRow(r, cfg));
    if (o.json) {
      io.out(`${JSON.stringify({ registry: reg.description, revision, leases: rows }, null, 2)}\n`);
      return 0;
    }
    io.out(`${reg.description} — ${rows.length} lease(s), revision ${revision}\n`);
    // the IPv6 columns only where some lease has an IPv6 side: IPv4-only tables stay as they were
    const dual = rows.some((r) => r.subnet6 !== undefined || r.publicIpv6 !== undefined);
    io.out(
      table(
        [
          "SUBNET",
          ...(dual ? ["IPV6 SUBNET"] : []),
          "PUBLIC IP",
          ...(dual ? ["PUBLIC IPV6"] : []),
          "BACKEND",
          "VTEP MAC",
          "EXPIRES",
        ],
        rows.map((r) => [
          r.subnet,
          ...(dual ? [r.subnet6 ?? "-"] : []),
          r.publicIp ?? "-",
          ...(dual ? [r.publicIpv6 ?? "-"] : []),
          r.backendType ?? "-",
          r.vtepMac ?? "-",
          r.valid ? (r.expiresAt ?? "never") : `INVALID: ${r.reason}`,
        ]),
      ),
    );
    return 0;
  });
}

async function deleteLease(o: RegistryCommandOptions, subnet: Cidr, io: Io): Promise<number> {
  return withRegistry(await openExisting(o, io.log), async (reg) => {
    const key = cidrToKey(subnet);
    if (await reg.delete(key)) {
      io.out(`deleted lease ${formatCidr(subnet)} from ${reg.description}\n`);
      return 0;
    }
    // a dual-stack lease's key names its IPv6 subnet too: find it by its IPv4 one
    const dual = (await reg.list()).records.filter((r) => {
      const pair = parseSubnetKey(r.key);
      return pair !== null && pair.v6 !== null && cidrEquals(pair.v4, subnet);
    });
    let deleted = 0;
    for (const r of dual)
      if (await reg.delete(r.key)) {
        deleted++;
        io.out(`deleted lease ${formatCidr(subnet)} (${r.key}) from ${reg.description}\n`);
      }
    if (deleted === 0)
      throw new Error(
        `no lease ${formatCidr(subnet)} in ${reg.description} (\`tartan leases ${registryFlags(o.registry)}\` lists them)`,
      );
    return 0;
  });
}

export const leasesCommand: Command = {
  name: "leases",
  summary: "list the leases in the registry (`leases delete SUBNET` deletes one)",
  usage: "tartan leases [flags]\n       tartan leases delete SUBNET [flags]",
  about: [
    "List every lease in the registry, in subnet order, with its validity; or delete one lease",
    "(its node then leases a subnet again: a new one unless it still records holding this one).",
  ].join("\n"),
  flags: REGISTRY_COMMAND_FLAGS,
  env: true,
  notes: [
    "Examples:",
    "  tartan leases --registry=sqlite:/var/lib/tartan/registry.db",
    "  tartan leases delete 10.244.3.0/24 -etcd-endpoints=https://10.0.0.1:2379",
  ],
  async run(p, io) {
    const o = registryCommandOptions(p);
    const [verb, arg, ...extra] = o.positionals;
    if (verb === undefined) return listLeases(o, io);
    if (verb !== "delete")
      throw new ValidationError(
        `unknown action "${verb}" for leases; use "tartan leases" or "tartan leases delete SUBNET"`,
      );
    const subnet =
      arg === undefined ? null : (keyToCidr(arg) ?? parseCidr(arg) ?? parseSubnetKey(arg)?.v4 ?? null);
    if (!subnet || extra.length > 0)
      throw new ValidationError(
        `leases delete needs one SUBNET like 10.244.3.0/24 or 10.244.3.0-24 (got ${JSON.stringify(arg ?? "")})`,
      );
    return deleteLease(o, subnet, io);
  },
};

/** Reads and validates FILE; a bad file changes nothing. Warnings go to stderr, one line each. */
function readConfigFile(file: string, io: Io): { text: string; cfg: NetworkConfig } {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EISDIR" ? "a directory" : (e as Error).message;
    throw new ValidationError(`${file}: cannot read it (${why}); config set needs flannel's net-conf.json`);
  }
  let cfg: NetworkConfig;
  try {
    cfg = parseNetworkConfig(text);
  } catch (e) {
    throw new ValidationError(`${file}: ${(e as Error).message}`);
  }
  for (const w of cfg.warnings) io.err(`tartan: warning: ${file}: ${w}\n`);
  return { text, cfg };
}

async function setConfig(o: RegistryCommandOptions, file: string, io: Io): Promise<number> {
  const { text, cfg } = readConfigFile(file, io);
  return withRegistry(await openRegistry(o.registry, io.log), async (reg) => {
    await reg.setConfig(text.trim());
    const c6 = cfg.ipv6 ?? null;
    const v6 = c6
      ? `; IPv6Network ${formatCidr6(c6.network)}, IPv6SubnetLen ${c6.subnetLen}, ${formatIp6(c6.subnetMin)} – ${formatIp6(c6.subnetMax)}`
      : "";
    io.out(
      `stored network config in ${reg.description}: Network ${formatCidr(cfg.network)}, SubnetLen ${cfg.subnetLen}, ${formatIp4(cfg.subnetMin)} – ${formatIp4(cfg.subnetMax)}${v6}, Backend ${cfg.backend.type}\n`,
    );
    return 0;
  });
}

async function getConfig(o: RegistryCommandOptions, io: Io): Promise<number> {
  return withRegistry(await openExisting(o, io.log), async (reg) => {
    const raw = await reg.getConfig();
    if (raw === null)
      throw new Error(
        `no network config in ${reg.description}; store one with \`tartan config set net-conf.json ${registryFlags(o.registry)}\``,
      );
    io.out(`${raw}\n`);
    return 0;
  });
}

export const configCommand: Command = {
  name: "config",
  summary: "`config get` prints the registry's network config; `config set FILE` stores one",
  usage: "tartan config get [flags]\n       tartan config set FILE [flags]",
  about: [
    "Read or write the network config (flannel's net-conf.json) in the registry. `set` validates",
    "the file first and changes nothing when it is invalid; it warns about keys it does not know.",
  ].join("\n"),
  flags: REGISTRY_COMMAND_FLAGS,
  env: true,
  notes: [
    "Example net-conf.json:",
    '  {"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}',
    "Keys are flannel's (any letter case, as flannel reads them): Network, SubnetLen, SubnetMin,",
    "SubnetMax, EnableIPv4, EnableIPv6, IPv6Network, IPv6SubnetLen, IPv6SubnetMin, IPv6SubnetMax,",
    "Backend{Type, VNI, Port, MTU, DirectRouting}.",
  ],
  async run(p, io) {
    const o = registryCommandOptions(p);
    const [verb, file, ...rest] = o.positionals;
    if (verb === undefined)
      throw new ValidationError('config needs an action: "tartan config get" or "tartan config set FILE"');
    if (verb !== "get" && verb !== "set")
      throw new ValidationError(
        `unknown action "${verb}" for config; use "tartan config get" or "tartan config set FILE"`,
      );
    if (verb === "set" && !file) throw new ValidationError("config set needs FILE, a flannel net-conf.json");
    if (rest.length > 0 || (verb === "get" && file))
      throw new ValidationError(`config ${verb}: unexpected argument ${JSON.stringify(rest[0] ?? file)}`);
    return verb === "set" ? setConfig(o, file!, io) : getConfig(o, io);
  },
};
