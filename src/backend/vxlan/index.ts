/**
 * The `vxlan` backend: exactly what flanneld programs. A kernel vxlan device
 * `flannel.<VNI>` (learning off, MTU = underlay − 50, address <subnet>.0/32, a MAC that
 * survives restarts) and, per remote lease, a neighbour, an FDB entry and an onlink
 * route — applied in batches so 10,000 leases take two processes, not 30,000.
 */
import { formatIp4 } from "../../config/cidr.ts";
import type { Lease } from "../../lease/lease.ts";
import type { LeaseDiff } from "../../lease/reconcile.ts";
import { applyBatch, removeBatch } from "../../net/batch.ts";
import { deleteLink, getLink, ip, ipJson, listAddrs } from "../../net/ip.ts";
import { loadRouteLookup, type RouteLookup } from "../../net/routes.ts";
import { enableForwarding } from "../../net/sysctl.ts";
import type { Backend, BackendAnnouncement, BackendContext, BackendHealth } from "../backend.ts";
import { addLines, isVxlanPeer, removeLines, stableVtepMac, type VxlanPlanInput } from "./plan.ts";

/** flanneld's overhead: outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14. */
export const VXLAN_OVERHEAD = 50;

interface VxlanInfo {
  id?: number;
  local?: string;
  link?: string;
  port?: number;
  learning?: boolean;
}

export function vxlanDeviceName(vni: number): string {
  return `flannel.${vni}`;
}

export function createVxlanBackend(ctx: BackendContext): Backend {
  const { config, extIface, log } = ctx;
  const vni = config.backend.vni;
  const device = vxlanDeviceName(vni);
  const mtu = config.backend.mtu ?? extIface.mtu - VXLAN_OVERHEAD;
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

  async function ensureDevice(): Promise<string> {
    const want = { id: vni, local: formatIp4(extIface.ifaceIp), port: config.backend.port };
    const rows = await ipJson<{
      address?: string;
      mtu: number;
      linkinfo?: { info_kind?: string; info_data?: VxlanInfo };
    }>("-details", "link", "show", "dev", device).catch(() => []);
    const cur = rows[0];
    if (cur) {
      const d = cur.linkinfo?.info_data ?? {};
      const same =
        cur.linkinfo?.info_kind === "vxlan" &&
        d.id === want.id &&
        d.local === want.local &&
        d.port === want.port &&
        d.learning === false;
      if (same) {
        if (cur.mtu !== mtu) await ip("link", "set", "dev", device, "mtu", String(mtu));
        // someone changed the MAC we announced: peers' FDB entries point at the old one
        if (mac && cur.address !== mac) {
          log.warn("vxlan device MAC differs from the one in our lease; restoring it", {
            device,
            have: cur.address,
            want: mac,
          });
          await ip("link", "set", "dev", device, "address", mac);
          await ip("link", "set", "dev", device, "up");
          return mac;
        }
        await ip("link", "set", "dev", device, "up");
        log.info("adopted existing vxlan device", { device, mac: cur.address, mtu });
        return cur.address ?? "";
      }
      log.warn("vxlan device exists with different attributes; recreating it", {
        device,
        have: JSON.stringify(d),
        want: JSON.stringify(want),
      });
      await deleteLink(device);
    }
    // keep the MAC we announced (or of the device we replace), so peers' FDB entries stay right
    const newMac = cur?.address ?? (mac || stableVtepMac(extIface.publicIp, vni));
    await ip(
      "link",
      "add",
      device,
      "type",
      "vxlan",
      "id",
      String(vni),
      "local",
      want.local,
      "dev",
      extIface.name,
      "dstport",
      String(want.port),
      "nolearning",
    );
    created = true;
    await ip("link", "set", "dev", device, "address", newMac, "mtu", String(mtu), "up");
    log.info("created vxlan device", { device, vni, mac: newMac, mtu, dev: extIface.name, port: want.port });
    return newMac;
  }

  return {
    name: "vxlan",
    async prepare(): Promise<BackendAnnouncement> {
      // a (re)created device starts empty: everything must be programmed again
      mine.clear();
      mac = await ensureDevice();
      enableForwarding(log);
      return { backendType: "vxlan", vxlan: { VNI: vni, VtepMAC: mac }, mtu };
    },
    async setLocal(lease: Lease): Promise<void> {
      const want = `${formatIp4(lease.subnet.ip)}/32`;
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
      const link = await getLink(device);
      if (!link) return { ok: false, reason: `vxlan device ${device} is missing` };
      if (!link.flags.includes("UP")) return { ok: false, reason: `vxlan device ${device} is down` };
      if (mac && link.address !== mac)
        return {
          ok: false,
          reason: `vxlan device ${device} has MAC ${link.address}, our lease announces ${mac}`,
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
