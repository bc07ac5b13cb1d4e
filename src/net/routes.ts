/**
 * Route lookups done in memory over one read of the routing table: which route the
 * kernel would pick for an address (longest prefix), and whether a peer is directly
 * reachable (on-link, no gateway) — what DirectRouting and host-gw need per lease,
 * without one `ip route get` process per lease.
 */
import { readFileSync } from "node:fs";
import { containsIp, type Ip4, parseCidr, parseIp4 } from "../config/cidr.ts";
import { containsIp6, type Ip6, parseCidr6 } from "../config/cidr6.ts";
import { ipJson, listRoutes, type Route } from "./ip.ts";

export interface RouteLookup {
  /** The most specific main-table route for `ip`, or null. */
  lookup(ip: Ip4): Route | null;
  /** True when `ip` is reached without a gateway (same L2). */
  isDirect(ip: Ip4): boolean;
}

/** Reached without a gateway: a link-scope route, or the kernel's own route for an address's prefix. */
const onLink = (r: Route | null): boolean =>
  r !== null && !r.gateway && (r.scope === "link" || r.scope === undefined || r.protocol === "kernel");

/** Longest-prefix match over one family's routes: `parse` reads a route's dst ("default" included). */
function longestPrefix<A, C extends { readonly len: number }>(
  routes: readonly Route[],
  parse: (dst: string) => C | null,
  contains: (c: C, ip: A) => boolean,
): (ip: A) => Route | null {
  const parsed = routes
    .map((r) => {
      const c = parse(r.dst);
      return c ? { c, r } : null;
    })
    .filter((x): x is NonNullable<typeof x> => x !== null)
    .sort((a, b) => b.c.len - a.c.len);
  return (ip) => parsed.find((x) => contains(x.c, ip))?.r ?? null;
}

export function routeLookup(routes: readonly Route[]): RouteLookup {
  const lookup = longestPrefix(
    routes,
    (dst) =>
      dst === "default" ? { ip: 0, len: 0 } : parseCidr(dst.includes("/") ? dst : `${dst}/32`, false),
    containsIp,
  );
  return { lookup, isDirect: (ip) => onLink(lookup(ip)) };
}

/** The IPv6 main table's lookups: the same questions for a dual-stack peer's PublicIPv6. */
export interface RouteLookup6 {
  lookup(ip: Ip6): Route | null;
  isDirect(ip: Ip6): boolean;
}

export function routeLookup6(routes: readonly Route[]): RouteLookup6 {
  const lookup = longestPrefix(
    routes,
    (dst) =>
      dst === "default" ? { ip: 0n, len: 0 } : parseCidr6(dst.includes("/") ? dst : `${dst}/128`, false),
    containsIp6,
  );
  return { lookup, isDirect: (ip) => onLink(lookup(ip)) };
}

export async function loadRouteLookup6(): Promise<RouteLookup6> {
  return routeLookup6(await ipJson<Route>("-6", "route", "show"));
}

export async function loadRouteLookup(): Promise<RouteLookup> {
  return routeLookup(await listRoutes());
}

export function parseGateway(r: Route | null): Ip4 | null {
  return r?.gateway ? parseIp4(r.gateway) : null;
}

/** One IPv4 route of the main table as /proc/net/route lists it. */
export interface ProcRoute {
  readonly dev: string;
  readonly dst: Ip4;
  readonly len: number;
}

/** /proc/net/route's hex fields: the address's bytes in network order, printed as a host-order (little-endian) u32. */
function procHexIp(hex: string): Ip4 {
  const n = Number.parseInt(hex, 16) >>> 0;
  return (((n & 0xff) << 24) | (((n >>> 8) & 0xff) << 16) | (((n >>> 16) & 0xff) << 8) | (n >>> 24)) >>> 0;
}

/** Parses /proc/net/route (the main table of the reader's network namespace). Pure. */
export function parseProcRoutes(text: string): ProcRoute[] {
  const out: ProcRoute[] = [];
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8 || !/^[0-9A-Fa-f]{8}$/.test(f[1]!) || !/^[0-9A-Fa-f]{8}$/.test(f[7]!)) continue;
    const mask = procHexIp(f[7]!);
    let len = 0;
    while (len < 32 && mask & (0x80000000 >>> len)) len++;
    out.push({ dev: f[0]!, dst: procHexIp(f[1]!), len });
  }
  return out;
}

/**
 * Is `dst` routed via `dev` in the main table? Read from /proc/net/route (per network
 * namespace, unlike sysfs), without spawning `ip`: the watchdog asks every few seconds.
 */
export function mainRouteVia(dev: string, dst: { ip: Ip4; len: number }): boolean {
  return parseProcRoutes(readFileSync("/proc/net/route", "utf8")).some(
    (r) => r.dev === dev && r.dst === dst.ip && r.len === dst.len,
  );
}
