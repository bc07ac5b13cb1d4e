/**
 * The `host-gw` backend, as flanneld's: one route per remote subnet via the remote
 * node's PublicIP (dual stack: and one per IPv6 subnet via its PublicIPv6). Only works
 * when every peer is on our L2; a peer behind a gateway is refused with a clear error
 * (logged once, counted), never routed wrongly.
 */
import { formatIp4 } from "../../config/cidr.ts";
import { formatIp6 } from "../../config/cidr6.ts";
import type { Lease } from "../../lease/lease.ts";
import type { LeaseDiff } from "../../lease/reconcile.ts";
import { applyBatch, removeBatch } from "../../net/batch.ts";
import { linkState } from "../../net/link-state.ts";
import { loadRouteLookup, loadRouteLookup6, type RouteLookup6 } from "../../net/routes.ts";
import { enableForwarding, enableForwarding6 } from "../../net/sysctl.ts";
import type { Backend, BackendContext } from "../backend.ts";
import { podMtu, routeLine } from "../facts.ts";
import { HOST_GW_FACTS, hostGwRoute, hostGwRoute6, isHostGwPeer } from "./facts.ts";

export function createHostGwBackend(ctx: BackendContext): Backend {
  const { extIface, log } = ctx;
  const dual = (ctx.config.ipv6 ?? null) !== null;
  /** The route lines programmed per lease key (exactly these are removed again). */
  const programmed = new Map<string, string[]>();
  const refused = new Map<string, string>();
  /** Dual stack: peers whose IPv6 underlay is behind a gateway (their IPv4 side may be fine). */
  const refused6 = new Map<string, string>();
  let unreachable = 0;
  let routes6: RouteLookup6 | null = null;
  /** A peer's routes: IPv4, then (dual stack, when it has an IPv6 side on our L2) IPv6. */
  const routesOf = (l: Lease): string[] => {
    const out = [routeLine(hostGwRoute(l, extIface.name))];
    const r6 = dual ? hostGwRoute6(l, extIface.name) : null;
    const pub6 = l.attrs.publicIpv6 ?? null;
    if (r6 === null || pub6 === null) return out;
    if (routes6?.isDirect(pub6)) out.push(routeLine(r6));
    else if (refused6.get(l.key) !== formatIp6(pub6)) {
      refused6.set(l.key, formatIp6(pub6));
      log.error("host-gw cannot reach this peer's IPv6 underlay directly; not routing its IPv6 subnet", {
        subnet: l.key,
        publicIpv6: formatIp6(pub6),
      });
    }
    return out;
  };

  return {
    name: "host-gw",
    prepare: async () => {
      enableForwarding(log); // pods are routed through this node, as with every backend
      if (dual) enableForwarding6(log, extIface.name);
      return {
        backendType: "host-gw",
        vxlan: null,
        mtu: podMtu(HOST_GW_FACTS, ctx.config.backend.mtu, extIface.mtu),
      };
    },
    setLocal: async () => {},
    async apply(diff: LeaseDiff): Promise<void> {
      const routes = await loadRouteLookup();
      if (dual) routes6 = await loadRouteLookup6();
      const del: string[] = [];
      const add: string[] = [];
      const next = new Map<string, string[]>();
      for (const l of diff.remove) {
        for (const r of programmed.get(l.key) ?? []) del.push(`route del ${r}`);
        programmed.delete(l.key);
        refused.delete(l.key);
        refused6.delete(l.key);
      }
      for (const l of [...diff.add, ...diff.update]) {
        let lines: string[] = [];
        if (isHostGwPeer(l) && routes.isDirect(l.attrs.publicIp)) lines = routesOf(l);
        else if (isHostGwPeer(l) && refused.get(l.key) !== formatIp4(l.attrs.publicIp)) {
          refused.set(l.key, formatIp4(l.attrs.publicIp));
          unreachable++;
          log.error(
            "host-gw cannot reach this peer directly (its PublicIP is behind a gateway); not routing its subnet — use vxlan or ebpf-vxlan across L3",
            {
              subnet: l.key,
              publicIp: formatIp4(l.attrs.publicIp),
            },
          );
        }
        // an unchanged route is replaced in place, never deleted first
        for (const r of programmed.get(l.key) ?? []) if (!lines.includes(r)) del.push(`route del ${r}`);
        add.push(...lines.map((r) => `route replace ${r}`));
        next.set(l.key, lines);
      }
      await removeBatch("ip", del);
      await applyBatch("ip", add);
      for (const [key, lines] of next) {
        if (lines.length > 0) programmed.set(key, lines);
        else programmed.delete(key);
      }
    },
    async health() {
      // asked every few seconds by the watchdog: an ioctl, not an `ip` process
      return linkState(extIface.name)?.up
        ? { ok: true }
        : { ok: false, reason: `underlay ${extIface.name} is down or gone` };
    },
    counters: async () => ({
      hostgw_unreachable_peers: refused.size,
      hostgw_unreachable_total: unreachable,
    }),
    close: async () => {},
    // prepare() creates nothing here
    abandon: async () => {},
  };
}
