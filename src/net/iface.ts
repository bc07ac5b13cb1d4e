/**
 * Picking the underlay interface as flanneld does: --iface (names or addresses, first
 * match wins), --iface-regex, --iface-can-reach (the route the kernel would take), else
 * the interface of the default route. The same interface's IPv6 address carries a
 * dual-stack node's IPv6 underlay (flanneld insists v4 and v6 share one interface).
 * Reads `ip -json` output; selection itself is pure.
 */
import { formatIp4, type Ip4, parseIp4 } from "../config/cidr.ts";
import { formatIp6, type Ip6, parseIp6 } from "../config/cidr6.ts";
import { ip } from "./ip.ts";

export interface IfaceInfo {
  readonly name: string;
  readonly index: number;
  readonly mtu: number;
  readonly mac: string;
  readonly up: boolean;
  /** IPv4 addresses, primary first. */
  readonly addrs: Ip4[];
  /**
   * Global IPv6 addresses (no link-local, deprecated or failed ones), in the kernel's
   * order with the ones still in duplicate address detection last.
   */
  readonly addrs6?: Ip6[];
}

interface IpAddrJson {
  ifindex: number;
  ifname: string;
  mtu: number;
  address?: string;
  operstate?: string;
  flags?: string[];
  addr_info?: {
    family: string;
    local: string;
    scope?: string;
    tentative?: boolean;
    dadfailed?: boolean;
    deprecated?: boolean;
  }[];
}

export function parseIpAddrJson(json: string): IfaceInfo[] {
  const rows = JSON.parse(json) as IpAddrJson[];
  return rows.map((r) => {
    const v6 = (r.addr_info ?? []).filter(
      (a) => a.family === "inet6" && a.scope === "global" && !a.dadfailed && !a.deprecated,
    );
    const settled = [...v6.filter((a) => !a.tentative), ...v6.filter((a) => a.tentative)];
    return {
      name: r.ifname,
      index: r.ifindex,
      mtu: r.mtu,
      mac: r.address ?? "",
      up: (r.flags ?? []).includes("UP"),
      addrs: (r.addr_info ?? [])
        .filter((a) => a.family === "inet" && a.scope !== "host")
        .map((a) => parseIp4(a.local))
        .filter((a): a is number => a !== null),
      addrs6: settled.map((a) => parseIp6(a.local)).filter((a): a is bigint => a !== null),
    };
  });
}

export async function listInterfaces(): Promise<IfaceInfo[]> {
  return parseIpAddrJson(await ip("-json", "addr", "show"));
}

/** The interface name the kernel routes `dst` through (null when unroutable). */
export async function routeDevice(dst: Ip4 | null): Promise<string | null> {
  return (await routeTo(dst === null ? null : formatIp4(dst)))?.dev ?? null;
}

/** `ip route get DST` (or the default route): its device and source address. */
async function routeTo(dst: string | null): Promise<{ dev?: string; prefsrc?: string } | null> {
  try {
    const out =
      dst === null ? await ip("-json", "route", "show", "default") : await ip("-json", "route", "get", dst);
    const rows = JSON.parse(out) as { dev?: string; prefsrc?: string }[];
    return rows[0] ?? null;
  } catch {
    return null;
  }
}

export interface IfaceChoice {
  readonly iface: IfaceInfo;
  readonly ifaceIp: Ip4;
  /** The interface's IPv6 address for a dual-stack underlay: the one named or matched, else its first; null when it has none. */
  readonly ifaceIp6: Ip6 | null;
}

export interface SelectInput {
  readonly ifaces: readonly IfaceInfo[];
  /** --iface values: names or IPv4 addresses */
  readonly names: readonly string[];
  readonly regexes: readonly string[];
  /** the device the route to --iface-can-reach (or the default route) uses */
  readonly routeDev: string | null;
  readonly routeWhy: string;
  /** --iface-can-reach's route chose this IPv6 source address. */
  readonly routeSrc6?: Ip6 | null;
}

/** Pure selection; throws with an operator-readable reason. */
export function selectInterface(input: SelectInput): IfaceChoice {
  const usable = (i: IfaceInfo) => i.addrs.length > 0 && i.name !== "lo";
  const pick = (i: IfaceInfo, ipWanted?: Ip4, ip6Wanted?: Ip6 | null): IfaceChoice => ({
    iface: i,
    ifaceIp: ipWanted ?? i.addrs[0]!,
    ifaceIp6: ip6Wanted ?? i.addrs6?.[0] ?? null,
  });
  if (input.names.length > 0) {
    for (const n of input.names) {
      const asIp = parseIp4(n);
      const asIp6 = asIp === null ? parseIp6(n) : null;
      for (const i of input.ifaces) {
        const match =
          asIp !== null
            ? i.addrs.includes(asIp)
            : asIp6 !== null
              ? (i.addrs6 ?? []).includes(asIp6)
              : i.name === n;
        if (match) {
          if (i.name === "lo")
            throw new Error(
              `--iface=${n}: lo is the loopback interface, not usable as the underlay; name the interface other nodes reach this one through`,
            );
          if (!usable(i)) throw new Error(`--iface=${n}: interface ${i.name} has no IPv4 address`);
          return pick(i, asIp ?? undefined, asIp6);
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
        const byIp6 = (i.addrs6 ?? []).find((a) => r.test(formatIp6(a)));
        if (byIp !== undefined) return pick(i, byIp, byIp6);
        if (byIp6 !== undefined || r.test(i.name)) return pick(i, undefined, byIp6);
      }
    }
    throw new Error(`--iface-regex=${input.regexes.join(",")}: no interface name or address matches`);
  }
  if (!input.routeDev)
    throw new Error(
      `${input.routeWhy}: no route found; choose the underlay interface with --iface=NAME or --iface-can-reach=IP`,
    );
  const i = input.ifaces.find((x) => x.name === input.routeDev);
  if (!i || !usable(i))
    throw new Error(`${input.routeWhy} uses ${input.routeDev}, which has no IPv4 address; use --iface=NAME`);
  return pick(i, undefined, input.routeSrc6);
}

export async function findInterface(opts: {
  names: readonly string[];
  regexes: readonly string[];
  canReach: Ip4 | null;
  /** --iface-can-reach given an IPv6 address (flanneld takes either family). */
  canReach6?: Ip6 | null;
}): Promise<IfaceChoice> {
  const ifaces = await listInterfaces();
  const needRoute = opts.names.length === 0 && opts.regexes.length === 0;
  const reach6 = opts.canReach6 ?? null;
  const dst = opts.canReach !== null ? formatIp4(opts.canReach) : reach6 !== null ? formatIp6(reach6) : null;
  const route = needRoute ? await routeTo(dst) : null;
  const src6 = reach6 !== null && route?.prefsrc ? parseIp6(route.prefsrc) : null;
  return selectInterface({
    ifaces,
    names: opts.names,
    regexes: opts.regexes,
    routeDev: route?.dev ?? null,
    routeWhy: dst !== null ? `--iface-can-reach=${dst}` : "the default route",
    routeSrc6: src6,
  });
}
