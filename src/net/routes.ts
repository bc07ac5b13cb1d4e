/**
 * Route lookups done in memory over one read of the routing table: which route the
 * kernel would pick for an address (longest prefix), and whether a peer is directly
 * reachable (on-link, no gateway) — what DirectRouting and host-gw need per lease,
 * without one `ip route get` process per lease.
 */
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
