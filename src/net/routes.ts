/**
 * Route lookups done in memory over one read of the routing table: which route the
 * kernel would pick for an address (longest prefix), and whether a peer is directly
 * reachable (on-link, no gateway) — what DirectRouting and host-gw need per lease,
 * without one `ip route get` process per lease.
 */
import { containsIp, type Ip4, parseCidr, parseIp4 } from "../config/cidr.ts";
import { listRoutes, type Route } from "./ip.ts";

export interface RouteLookup {
  /** The most specific main-table route for `ip`, or null. */
  lookup(ip: Ip4): Route | null;
  /** True when `ip` is reached without a gateway (same L2). */
  isDirect(ip: Ip4): boolean;
}

export function routeLookup(routes: readonly Route[]): RouteLookup {
  const parsed = routes
    .map((r) => {
      const c =
        r.dst === "default"
          ? { ip: 0, len: 0 }
          : parseCidr(r.dst.includes("/") ? r.dst : `${r.dst}/32`, false);
      return c ? { c, r } : null;
    })
    .filter((x): x is NonNullable<typeof x> => x !== null)
    .sort((a, b) => b.c.len - a.c.len);
  const lookup = (ip: Ip4) => parsed.find((x) => containsIp(x.c, ip))?.r ?? null;
  return {
    lookup,
    isDirect: (ip) => {
      const r = lookup(ip);
      return (
        r !== null && !r.gateway && (r.scope === "link" || r.scope === undefined || r.protocol === "kernel")
      );
    },
  };
}

export async function loadRouteLookup(): Promise<RouteLookup> {
  return routeLookup(await listRoutes());
}

export function parseGateway(r: Route | null): Ip4 | null {
  return r?.gateway ? parseIp4(r.gateway) : null;
}
