/**
 * `tartan leases`, `tartan config get`, `tartan config set FILE`: read and write the
 * registry directly (sqlite file or etcd), with flannel's validation.
 */
import { readFileSync } from "node:fs";
import { cidrToKey, formatCidr, formatIp4, keyToCidr, parseCidr } from "../config/cidr.ts";
import { parseNetworkConfig } from "../config/network.ts";
import { decodeLeaseRecord } from "../lease/lease.ts";
import type { Logger } from "../log.ts";
import { openRegistry } from "../registry/index.ts";
import { ValidationError } from "../validation.ts";
import { flagsHelp } from "./help.ts";
import { parseRegistryCommand, REGISTRY_COMMAND_FLAGS } from "./options.ts";
import { table } from "./table.ts";

type Out = (s: string) => void;

export function leasesHelp(): string {
  return flagsHelp(
    "tartan leases [flags]",
    "List every lease in the registry, with its validity.",
    REGISTRY_COMMAND_FLAGS,
  );
}

export function configHelp(): string {
  return flagsHelp(
    "tartan config get|set FILE [flags]",
    "Read or write the network config (flannel's net-conf.json) in the registry.\n`set` validates the file first and changes nothing when it is invalid.",
    REGISTRY_COMMAND_FLAGS,
    ["Example net-conf.json:", '  {"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}'],
  );
}

export async function runLeases(argv: readonly string[], log: Logger, out: Out): Promise<number> {
  const o = parseRegistryCommand("leases", argv);
  if (o.help) {
    out(`${leasesHelp()}\n`);
    return 0;
  }
  const [verb, arg, ...extra] = o.positionals;
  if (verb !== undefined && verb !== "delete")
    throw new ValidationError(
      `tartan leases ${verb}: unknown action; use "tartan leases" or "tartan leases delete SUBNET"`,
    );
  if (verb === "delete") {
    const subnet = arg === undefined ? null : (keyToCidr(arg) ?? parseCidr(arg));
    if (!subnet || extra.length > 0)
      throw new ValidationError(
        `tartan leases delete needs one SUBNET like 10.244.3.0/24 or 10.244.3.0-24 (got ${JSON.stringify(arg ?? "")})`,
      );
    const reg = await openRegistry(o.registry, log);
    try {
      const key = cidrToKey(subnet);
      if (!(await reg.delete(key))) {
        log.error("no such lease", { subnet: key, registry: reg.description });
        return 1;
      }
      out(`deleted lease ${formatCidr(subnet)} from ${reg.description}\n`);
      return 0;
    } finally {
      await reg.close();
    }
  }
  const reg = await openRegistry(o.registry, log);
  try {
    const raw = await reg.getConfig();
    const cfg = raw === null ? null : parseNetworkConfig(raw);
    const { records, revision } = await reg.list();
    const rows = records.map((r) => {
      const d = cfg ? decodeLeaseRecord(r, cfg) : null;
      const base = {
        key: r.key,
        expiresAt: r.expiresAt === null ? null : new Date(r.expiresAt).toISOString(),
      };
      if (d?.ok)
        return {
          ...base,
          subnet: formatCidr(d.lease.subnet),
          publicIp: formatIp4(d.lease.attrs.publicIp),
          backendType: d.lease.attrs.backendType,
          vtepMac: d.lease.attrs.vxlan?.VtepMAC ?? null,
          valid: true,
          reason: null,
        };
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
    });
    if (o.json) out(`${JSON.stringify({ registry: reg.description, revision, leases: rows }, null, 2)}\n`);
    else {
      out(`${reg.description} — ${rows.length} lease(s), revision ${revision}\n`);
      out(
        table(
          ["SUBNET", "PUBLIC IP", "BACKEND", "VTEP MAC", "EXPIRES"],
          rows.map((r) => [
            r.subnet,
            r.publicIp ?? "-",
            r.backendType ?? "-",
            r.vtepMac ?? "-",
            r.valid ? (r.expiresAt ?? "never") : `INVALID: ${r.reason}`,
          ]),
        ),
      );
    }
    return 0;
  } finally {
    await reg.close();
  }
}

export async function runConfig(argv: readonly string[], log: Logger, out: Out): Promise<number> {
  const o = parseRegistryCommand("config", argv);
  const [verb, file, ...rest] = o.positionals;
  if (o.help || verb === undefined) {
    out(`${configHelp()}\n`);
    return o.help ? 0 : 2;
  }
  if (verb !== "get" && verb !== "set")
    throw new ValidationError(`tartan config ${verb}: unknown action; use "get" or "set FILE"`);
  if (verb === "set" && !file)
    throw new ValidationError("tartan config set needs FILE, a flannel net-conf.json");
  if (rest.length > 0 || (verb === "get" && file))
    throw new ValidationError(
      `tartan config ${verb}: unexpected argument ${JSON.stringify(rest[0] ?? file)}`,
    );
  if (verb === "set") {
    let text: string;
    try {
      text = readFileSync(file!, "utf8");
    } catch (e) {
      throw new ValidationError(`${file}: cannot read it: ${(e as Error).message}`);
    }
    let cfg: ReturnType<typeof parseNetworkConfig>;
    try {
      cfg = parseNetworkConfig(text);
    } catch (e) {
      throw new ValidationError(`${file}: ${(e as Error).message}`);
    }
    const reg = await openRegistry(o.registry, log);
    try {
      await reg.setConfig(text.trim());
      out(
        `stored network config in ${reg.description}: Network ${formatCidr(cfg.network)}, SubnetLen ${cfg.subnetLen}, ${formatIp4(cfg.subnetMin)} – ${formatIp4(cfg.subnetMax)}, Backend ${cfg.backend.type}\n`,
      );
    } finally {
      await reg.close();
    }
    return 0;
  }
  const reg = await openRegistry(o.registry, log);
  try {
    const raw = await reg.getConfig();
    if (raw === null) {
      log.error("no network config in the registry; set one with tartan config set FILE", {
        registry: reg.description,
      });
      return 1;
    }
    out(`${raw}\n`);
    return 0;
  } finally {
    await reg.close();
  }
}
