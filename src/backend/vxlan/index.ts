/**
 * The `vxlan` backend: exactly what flanneld programs. A kernel vxlan device
 * `flannel.<VNI>` (learning off, MTU = underlay − 50, address <subnet>.0/32, a MAC that
 * survives restarts) and, per remote lease, a neighbour, an FDB entry and an onlink
 * route — applied in batches so 10,000 leases take two processes, not 30,000.
 */
import type { Lease } from "../../lease/lease.ts";
import type { LeaseDiff } from "../../lease/reconcile.ts";
import { applyBatch, removeBatch } from "../../net/batch.ts";
import { deleteLink, ip, ipJson, listAddrs } from "../../net/ip.ts";
import { linkState } from "../../net/link-state.ts";
import { loadRouteLookup, type RouteLookup } from "../../net/routes.ts";
import { enableForwarding } from "../../net/sysctl.ts";
import type { Backend, BackendAnnouncement, BackendContext, BackendHealth } from "../backend.ts";
import { podMtu, vtepAddress } from "../facts.ts";
import { ensureVxlanDevice } from "./device.ts";
import { isVxlanPeer, VXLAN_FACTS, type VxlanPlanInput, vxlanDeviceName } from "./facts.ts";
import { addLines, removeLines } from "./plan.ts";

export function createVxlanBackend(ctx: BackendContext): Backend {
  const { config, extIface, log } = ctx;
  const vni = config.backend.vni;
  const device = vxlanDeviceName(vni);
  const mtu = podMtu(VXLAN_FACTS, config.backend.mtu, extIface.mtu);
  /** What this process programmed, by subnet key (for exact removal). */
  const mine = new Map<string, Lease>();
  let routes: RouteLookup | null = null;
  let mac = "";
  /** This run created the device (it did not adopt one): a failed start removes it again. */
  let created = false;

  const plan = (): VxlanPlanInput => ({
    device,
    extIface: extIface.name,
    direct: (l) => config.backend.directRouting && routes !== null && routes.isDirect(l.attrs.publicIp),
  });

  return {
    name: "vxlan",
    async prepare(): Promise<BackendAnnouncement> {
      // a (re)created device starts empty: everything must be programmed again
      mine.clear();
      const dev = await ensureVxlanDevice({
        device,
        vni,
        port: config.backend.port,
        extIface,
        mtu,
        mac,
        log,
      });
      mac = dev.mac;
      created ||= dev.created;
      enableForwarding(log);
      return { backendType: "vxlan", vxlan: { VNI: vni, VtepMAC: mac }, mtu };
    },
    async setLocal(lease: Lease): Promise<void> {
      const want = vtepAddress(lease.subnet);
      for (const a of await listAddrs(device))
        if (a.family === "inet" && `${a.local}/${a.prefixlen}` !== want)
          await ip("addr", "del", `${a.local}/${a.prefixlen}`, "dev", device);
      await ip("addr", "replace", want, "dev", device);
    },
    async apply(diff: LeaseDiff): Promise<void> {
      if (config.backend.directRouting) routes = await loadRouteLookup();
      const stale: Lease[] = [];
      const add: Lease[] = [];
      for (const l of diff.remove) {
        const old = mine.get(l.key);
        if (old) stale.push(old);
      }
      for (const l of [...diff.add, ...diff.update]) {
        const old = mine.get(l.key);
        if (old) stale.push(old); // replaced entries may change MAC or path: remove the old exactly
        if (isVxlanPeer(l, vni)) add.push(l);
        else if (!old)
          log.info("not programming a lease of another backend or VNI", {
            subnet: l.key,
            backendType: l.attrs.backendType,
          });
      }
      const p = plan();
      const rm = removeLines(stale, p);
      await removeBatch("ip", rm.ip);
      await removeBatch("bridge", rm.bridge);
      for (const l of stale) mine.delete(l.key);
      const ad = addLines(add, p);
      await applyBatch("bridge", ad.bridge);
      await applyBatch("ip", ad.ip);
      for (const l of add) mine.set(l.key, l);
    },
    async health(): Promise<BackendHealth> {
      // asked every few seconds by the watchdog: an ioctl, not an `ip` process
      const link = linkState(device);
      if (!link) return { ok: false, reason: `vxlan device ${device} is missing` };
      if (!link.up) return { ok: false, reason: `vxlan device ${device} is down` };
      if (mac && link.mac !== mac.toLowerCase())
        return {
          ok: false,
          reason: `vxlan device ${device} has MAC ${link.mac}, our lease announces ${mac}`,
        };
      return { ok: true };
    },
    async counters(): Promise<Record<string, number>> {
      const rows = await ipJson<{
        stats64?: { rx: { packets: number; dropped: number }; tx: { packets: number; dropped: number } };
      }>("-s", "link", "show", "dev", device).catch(() => []);
      const s = rows[0]?.stats64;
      return s
        ? {
            vxlan_rx_packets: s.rx.packets,
            vxlan_tx_packets: s.tx.packets,
            vxlan_rx_dropped: s.rx.dropped,
            vxlan_tx_dropped: s.tx.dropped,
          }
        : {};
    },
    async close(): Promise<void> {},
    async abandon(): Promise<void> {
      if (created && (await deleteLink(device)))
        log.info("removed the vxlan device this start created", { device });
    },
  };
}

/** `tartan cleanup`: removes the vxlan device; its routes, neighbours and FDB entries go with it. */
export async function cleanupVxlan(vni: number): Promise<boolean> {
  return deleteLink(vxlanDeviceName(vni));
}
