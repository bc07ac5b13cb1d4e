/**
 * The `vxlan` backend: exactly what flanneld programs. A kernel vxlan device
 * `flannel.<VNI>` (learning off, MTU = underlay − 50, address <subnet>.0/32, a MAC that
 * survives restarts) and, per remote lease, a neighbour, an FDB entry and an onlink
 * route — applied in batches so 10,000 leases take two processes, not 30,000. Dual stack
 * adds `flannel-v6.<VNI>` on the IPv6 underlay (MTU = underlay − 70, address
 * <IPv6 subnet>::/128) with the same three entries per dual-stack peer; pods get one MTU
 * that fits both families.
 */
import { formatIp6 } from "../../config/cidr6.ts";
import type { Lease } from "../../lease/lease.ts";
import type { LeaseDiff } from "../../lease/reconcile.ts";
import { applyBatch, removeBatch } from "../../net/batch.ts";
import { deleteLink, ip, ipJson, listAddrs } from "../../net/ip.ts";
import { linkState } from "../../net/link-state.ts";
import { loadRouteLookup, loadRouteLookup6, type RouteLookup, type RouteLookup6 } from "../../net/routes.ts";
import { enableForwarding, enableForwarding6, writeSysctl } from "../../net/sysctl.ts";
import type { Backend, BackendAnnouncement, BackendContext, BackendHealth } from "../backend.ts";
import { podMtu, vtepAddress, vtepAddress6 } from "../facts.ts";
import { ensureVxlanDevice } from "./device.ts";
import {
  dualStackMtu,
  isVxlan6Peer,
  isVxlanPeer,
  stableVtepMac6,
  VXLAN_FACTS,
  type VxlanPlanInput,
  vxlan6DeviceName,
  vxlanDeviceName,
} from "./facts.ts";
import { addLines, entriesOf, removeLines } from "./plan.ts";

export function createVxlanBackend(ctx: BackendContext): Backend {
  const { config, extIface, log } = ctx;
  const vni = config.backend.vni;
  const device = vxlanDeviceName(vni);
  const dual = (config.ipv6 ?? null) !== null;
  const device6 = vxlan6DeviceName(vni);
  const mtu6 = dualStackMtu(config.backend.mtu, extIface.mtu);
  const mtu = dual ? mtu6.pods : podMtu(VXLAN_FACTS, config.backend.mtu, extIface.mtu);
  /** What this process programmed, by subnet key (for exact removal). */
  const mine = new Map<string, Lease>();
  let routes: RouteLookup | null = null;
  let routes6: RouteLookup6 | null = null;
  let mac = "";
  let mac6 = "";
  /** This run created the device(s) (it did not adopt them): a failed start removes them again. */
  let created = false;
  let created6 = false;

  const plan = (): VxlanPlanInput => ({
    device,
    extIface: extIface.name,
    direct: (l) => config.backend.directRouting && routes !== null && routes.isDirect(l.attrs.publicIp),
    ...(dual
      ? {
          v6: {
            device: device6,
            direct: (l: Lease) =>
              config.backend.directRouting && routes6?.isDirect(l.attrs.publicIpv6!) === true,
          },
        }
      : {}),
  });
  // only peers are ever programmed; their IPv6 side when both ends are dual stack
  const entries = entriesOf(
    () => true,
    (l) => dual && isVxlan6Peer(l, vni),
  );

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
      if (!dual) return { backendType: "vxlan", vxlan: { VNI: vni, VtepMAC: mac }, mtu };
      warnIfMtuTooBig6(ctx, device6, mtu6.device6);
      const dev6 = await ensureVxlanDevice(vxlan6DeviceSpec(ctx, device6, mtu6.device6, mac6));
      mac6 = dev6.mac;
      created6 ||= dev6.created;
      // as flanneld: no router advertisements configure the overlay device
      writeSysctl(`net/ipv6/conf/${device6}/accept_ra`, 0);
      enableForwarding6(log, extIface.name);
      return {
        backendType: "vxlan",
        vxlan: { VNI: vni, VtepMAC: mac },
        vxlan6: { VNI: vni, VtepMAC: mac6 },
        mtu,
      };
    },
    async setLocal(lease: Lease): Promise<void> {
      await setOnlyAddress(device, "inet", vtepAddress(lease.subnet));
      const sn6 = lease.subnet6 ?? null;
      if (!dual || sn6 === null) return;
      // nodad: the device has no peers to answer duplicate address detection, and a tentative
      // address cannot be the source of host-to-pod traffic for the second DAD takes
      await setOnlyAddress(device6, "inet6", vtepAddress6(sn6), "nodad");
    },
    async apply(diff: LeaseDiff): Promise<void> {
      if (config.backend.directRouting) routes = await loadRouteLookup();
      if (config.backend.directRouting && dual) routes6 = await loadRouteLookup6();
      const { stale, add, foreign } = sortDiff(diff, mine, vni);
      for (const l of foreign)
        log.info("not programming a lease of another backend or VNI", {
          subnet: l.key,
          backendType: l.attrs.backendType,
        });
      const p = plan();
      const rm = removeLines(stale, p, entries);
      await removeBatch("ip", rm.ip);
      await removeBatch("bridge", rm.bridge);
      for (const l of stale) mine.delete(l.key);
      const ad = addLines(add, p, entries);
      await applyBatch("bridge", ad.bridge);
      await applyBatch("ip", ad.ip);
      for (const l of add) mine.set(l.key, l);
    },
    async health(): Promise<BackendHealth> {
      const bad = await deviceProblem(device, mac);
      if (bad || !dual) return bad ? { ok: false, reason: bad } : { ok: true };
      const bad6 = await deviceProblem(device6, mac6);
      return bad6 ? { ok: false, reason: bad6 } : { ok: true };
    },
    async counters(): Promise<Record<string, number>> {
      return summedCounters(dual ? [device, device6] : [device]);
    },
    async close(): Promise<void> {},
    async abandon(): Promise<void> {
      if (created && (await deleteLink(device)))
        log.info("removed the vxlan device this start created", { device });
      if (created6 && (await deleteLink(device6)))
        log.info("removed the vxlan device this start created", { device: device6 });
    },
  };
}

/** A configured Backend.MTU above what IPv6 VXLAN carries here is allowed, but said once at start. */
function warnIfMtuTooBig6(ctx: BackendContext, device6: string, deviceMtu: number): void {
  const configured = ctx.config.backend.mtu;
  if (configured !== null && configured > deviceMtu)
    ctx.log.warn(
      "Backend.MTU is more than IPv6 VXLAN can carry on this underlay; IPv6 pod packets above the device's MTU get ICMPv6 Packet Too Big",
      { mtu: configured, device: device6, deviceMtu },
    );
}

/** How the IPv6 VXLAN device is made: on the IPv6 underlay, with a MAC stable per address and VNI. */
function vxlan6DeviceSpec(ctx: BackendContext, device6: string, mtu: number, mac6: string) {
  const { config, extIface, log } = ctx;
  const vni = config.backend.vni;
  const local6 = extIface.ifaceIpv6!;
  return {
    device: device6,
    vni,
    port: config.backend.port,
    extIface,
    mtu,
    mac: mac6,
    log,
    local: formatIp6(local6),
    stableMac: stableVtepMac6(extIface.publicIpv6 ?? local6, vni),
  };
}

/** Makes `want` the device's only address of `family` (IPv6 link-local ones stay). */
async function setOnlyAddress(device: string, family: "inet" | "inet6", want: string, ...flags: string[]) {
  for (const a of await listAddrs(device))
    if (
      a.family === family &&
      (family === "inet" || a.scope !== "link") &&
      `${a.local}/${a.prefixlen}` !== want
    )
      await ip("addr", "del", `${a.local}/${a.prefixlen}`, "dev", device);
  await ip("addr", "replace", want, "dev", device, ...flags);
}

/**
 * What a diff means for the entries this process programmed (`mine`): the old entries to
 * remove exactly, the peers to add, and leases of another backend or VNI not programmed.
 */
export function sortDiff(
  diff: LeaseDiff,
  mine: ReadonlyMap<string, Lease>,
  vni: number,
): { stale: Lease[]; add: Lease[]; foreign: Lease[] } {
  const stale: Lease[] = [];
  const add: Lease[] = [];
  const foreign: Lease[] = [];
  for (const l of diff.remove) {
    const old = mine.get(l.key);
    if (old) stale.push(old);
  }
  for (const l of [...diff.add, ...diff.update]) {
    const old = mine.get(l.key);
    if (old) stale.push(old); // replaced entries may change MAC or path: remove the old exactly
    if (isVxlanPeer(l, vni)) add.push(l);
    else if (!old) foreign.push(l);
  }
  return { stale, add, foreign };
}

/** Both devices' packets under one set of names: the metrics stay those of IPv4-only nodes. */
async function summedCounters(devices: readonly string[]): Promise<Record<string, number>> {
  const all = await Promise.all(devices.map(deviceStats));
  const have = all.filter((s) => s !== null);
  if (have.length === 0) return {};
  const sum = (f: (s: DeviceStats) => number) => have.reduce((n, s) => n + f(s), 0);
  return {
    vxlan_rx_packets: sum((s) => s.rx.packets),
    vxlan_tx_packets: sum((s) => s.tx.packets),
    vxlan_rx_dropped: sum((s) => s.rx.dropped),
    vxlan_tx_dropped: sum((s) => s.tx.dropped),
  };
}

/** Why a vxlan device is not fit to carry traffic (missing, down, not the MAC we announce), or null. */
/** The watchdog asks every few seconds: an ioctl (link-state.ts), not an `ip` process. */
async function deviceProblem(device: string, mac: string): Promise<string | null> {
  const link = linkState(device);
  if (!link) return `vxlan device ${device} is missing`;
  if (!link.up) return `vxlan device ${device} is down`;
  if (mac && link.mac !== mac.toLowerCase())
    return `vxlan device ${device} has MAC ${link.mac}, our lease announces ${mac}`;
  return null;
}

interface DeviceStats {
  rx: { packets: number; dropped: number };
  tx: { packets: number; dropped: number };
}

async function deviceStats(device: string): Promise<DeviceStats | null> {
  const rows = await ipJson<{ stats64?: DeviceStats }>("-s", "link", "show", "dev", device).catch(() => []);
  return rows[0]?.stats64 ?? null;
}

/**
 * `tartan cleanup`: removes the vxlan devices (flannel.<VNI>, and a dual-stack node's
 * flannel-v6.<VNI>); their routes, neighbours and FDB entries go with them. Returns the
 * names of those that were there.
 */
export async function cleanupVxlan(vni: number): Promise<string[]> {
  const removed: string[] = [];
  for (const dev of [vxlanDeviceName(vni), vxlan6DeviceName(vni)])
    if (await deleteLink(dev)) removed.push(dev);
  return removed;
}
