/**
 * The `host-gw` backend, as flanneld's: one route per remote subnet via the remote
 * node's PublicIP. Only works when every peer is on our L2; a peer behind a gateway is
 * refused with a clear error (logged once, counted), never routed wrongly.
 */
import { formatIp4 } from "../../config/cidr.ts";
import type { Lease } from "../../lease/lease.ts";
import type { LeaseDiff } from "../../lease/reconcile.ts";
import { applyBatch, removeBatch } from "../../net/batch.ts";
import { linkState } from "../../net/link-state.ts";
import { loadRouteLookup } from "../../net/routes.ts";
import { enableForwarding } from "../../net/sysctl.ts";
import type { Backend, BackendContext } from "../backend.ts";
import { podMtu, routeLine } from "../facts.ts";
import { HOST_GW_FACTS, hostGwRoute, isHostGwPeer } from "./facts.ts";

export function createHostGwBackend(ctx: BackendContext): Backend {
  const { extIface, log } = ctx;
  const mine = new Map<string, Lease>();
  const refused = new Map<string, string>();
  let unreachable = 0;
  const route = (l: Lease) => routeLine(hostGwRoute(l, extIface.name));

  return {
    name: "host-gw",
    prepare: async () => ({
      backendType: "host-gw",
      vxlan: null,
      mtu: podMtu(HOST_GW_FACTS, ctx.config.backend.mtu, extIface.mtu),
    }),
    setLocal: async () => {},
    async apply(diff: LeaseDiff): Promise<void> {
      const routes = await loadRouteLookup();
      const del: string[] = [];
      const add: string[] = [];
      const added: Lease[] = [];
      for (const l of diff.remove) {
        const old = mine.get(l.key);
        if (old) del.push(`route del ${route(old)}`);
        mine.delete(l.key);
        refused.delete(l.key);
      }
      for (const l of [...diff.add, ...diff.update]) {
        const old = mine.get(l.key);
        if (!isHostGwPeer(l)) {
          if (old) del.push(`route del ${route(old)}`);
          mine.delete(l.key);
          continue;
        }
        if (!routes.isDirect(l.attrs.publicIp)) {
          if (refused.get(l.key) !== formatIp4(l.attrs.publicIp)) {
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
          if (old) del.push(`route del ${route(old)}`);
          mine.delete(l.key);
          continue;
        }
        if (old && route(old) !== route(l)) del.push(`route del ${route(old)}`);
        add.push(`route replace ${route(l)}`);
        added.push(l);
      }
      await removeBatch("ip", del);
      await applyBatch("ip", add);
      for (const l of added) mine.set(l.key, l);
    },
    async health() {
      // asked every few seconds by the watchdog: an ioctl, not an `ip` process
      return linkState(extIface.name)?.up
        ? { ok: true }
        : { ok: false, reason: `underlay ${extIface.name} is down or gone` };
    },
    counters: async () => ({ hostgw_unreachable_peers: refused.size, hostgw_unreachable_total: unreachable }),
    close: async () => {},
    // prepare() creates nothing here
    abandon: async () => {},
  };
}
