/**
 * Picking the underlay interface as flanneld does: --iface (names or addresses, first
 * match wins), --iface-regex, --iface-can-reach (the route the kernel would take), else
 * the interface of the default route. Reads `ip -json` output; selection itself is pure.
 */
import { formatIp4, type Ip4, parseIp4 } from "../config/cidr.ts";
import { ip } from "./ip.ts";

export interface IfaceInfo {
  readonly name: string;
  readonly index: number;
  readonly mtu: number;
  readonly mac: string;
  readonly up: boolean;
  /** IPv4 addresses, primary first. */
  readonly addrs: Ip4[];
}

interface IpAddrJson {
  ifindex: number;
  ifname: string;
  mtu: number;
  address?: string;
  operstate?: string;
  flags?: string[];
  addr_info?: { family: string; local: string; scope?: string }[];
}

export function parseIpAddrJson(json: string): IfaceInfo[] {
  const rows = JSON.parse(json) as IpAddrJson[];
  return rows.map((r) => ({
    name: r.ifname,
    index: r.ifindex,
    mtu: r.mtu,
    mac: r.address ?? "",
    up: (r.flags ?? []).includes("UP"),
    addrs: (r.addr_info ?? [])
      .filter((a) => a.family === "inet" && a.scope !== "host")
      .map((a) => parseIp4(a.local))
      .filter((a): a is number => a !== null),
  }));
}

export async function listInterfaces(): Promise<IfaceInfo[]> {
  return parseIpAddrJson(await ip("-json", "addr", "show"));
}

/** The interface name the kernel routes `dst` through (null when unroutable). */
export async function routeDevice(dst: Ip4 | null): Promise<string | null> {
  try {
    const out =
      dst === null
        ? await ip("-json", "route", "show", "default")
        : await ip("-json", "route", "get", formatIp4(dst));
    const rows = JSON.parse(out) as { dev?: string }[];
    return rows[0]?.dev ?? null;
  } catch {
    return null;
  }
}

export interface IfaceChoice {
  readonly iface: IfaceInfo;
  readonly ifaceIp: Ip4;
}

export interface SelectInput {
  readonly ifaces: readonly IfaceInfo[];
  /** --iface values: names or IPv4 addresses */
  readonly names: readonly string[];
  readonly regexes: readonly string[];
  /** the device the route to --iface-can-reach (or the default route) uses */
  readonly routeDev: string | null;
  readonly routeWhy: string;
}

/** Pure selection; throws with an operator-readable reason. */
export function selectInterface(input: SelectInput): IfaceChoice {
  const usable = (i: IfaceInfo) => i.addrs.length > 0 && i.name !== "lo";
  const pick = (i: IfaceInfo, ipWanted?: Ip4): IfaceChoice => ({
    iface: i,
    ifaceIp: ipWanted ?? i.addrs[0]!,
  });
  if (input.names.length > 0) {
    for (const n of input.names) {
      const asIp = parseIp4(n);
      for (const i of input.ifaces) {
        if (asIp !== null ? i.addrs.includes(asIp) : i.name === n) {
          if (i.name === "lo")
            throw new Error(
              `--iface=${n}: lo is the loopback interface, not usable as the underlay; name the interface other nodes reach this one through`,
            );
          if (!usable(i)) throw new Error(`--iface=${n}: interface ${i.name} has no IPv4 address`);
          return pick(i, asIp ?? undefined);
        }
      }
    }
    throw new Error(
      `--iface=${input.names.join(",")}: no such interface or address here (have: ${input.ifaces.map((i) => i.name).join(", ")})`,
    );
  }
  if (input.regexes.length > 0) {
    for (const re of input.regexes) {
      const r = new RegExp(re);
      for (const i of input.ifaces) {
        if (!usable(i)) continue;
        const byIp = i.addrs.find((a) => r.test(formatIp4(a)));
        if (byIp !== undefined) return pick(i, byIp);
        if (r.test(i.name)) return pick(i);
      }
    }
    throw new Error(`--iface-regex=${input.regexes.join(",")}: no interface name or IPv4 address matches`);
  }
  if (!input.routeDev)
    throw new Error(
      `${input.routeWhy}: no route found; choose the underlay interface with --iface=NAME or --iface-can-reach=IP`,
    );
  const i = input.ifaces.find((x) => x.name === input.routeDev);
  if (!i || !usable(i))
    throw new Error(`${input.routeWhy} uses ${input.routeDev}, which has no IPv4 address; use --iface=NAME`);
  return pick(i);
}

export async function findInterface(opts: {
  names: readonly string[];
  regexes: readonly string[];
  canReach: Ip4 | null;
}): Promise<IfaceChoice> {
  const ifaces = await listInterfaces();
  const needRoute = opts.names.length === 0 && opts.regexes.length === 0;
  const routeDev = needRoute ? await routeDevice(opts.canReach) : null;
  return selectInterface({
    ifaces,
    names: opts.names,
    regexes: opts.regexes,
    routeDev,
    routeWhy: opts.canReach !== null ? `--iface-can-reach=${formatIp4(opts.canReach)}` : "the default route",
  });
}
