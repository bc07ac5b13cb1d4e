/**
 * The `ebpf-vxlan` backend: VXLAN (flannel's wire format, BackendType "vxlan") built
 * and taken apart by eBPF programs out of BPF maps filled from the leases — no
 * per-node routes, neighbours or FDB entries.
 *
 * prepare() loads the embedded object with its maps pinned under --bpffs (adopting
 * the maps of a previous run), fills the config map, creates the overlay device
 * `tartan.<VNI>` (a NOARP veth end carrying the VTEP MAC; one route for the cluster
 * network points at it, and its TC egress program encapsulates host traffic), and
 * attaches encap to the pod bridge's TC ingress and decap to the underlay (TC ingress,
 * or XDP). Attaching replaces the previous run's programs atomically, so an agent
 * restart drops nothing. apply() writes lease diffs to the subnet and member maps in
 * batches (one syscall per map and kind of change: 10,000 leases are two batches);
 * a timer keeps the endpoint map (local pods) in step with the bridge.
 */

import { existsSync } from "node:fs";
import {
  CFG_READY,
  MAPS,
  SUBNET_LOCAL,
  type SubnetKey,
  type SubnetValue,
  VXLAN_OVERHEAD,
} from "../../bpf/abi.ts";
import { xdpDetach } from "../../bpf/attach.ts";
import { pinFd, removePinDir } from "../../bpf/pin.ts";
import { containsIp, formatCidr, formatIp4, type Ip4 } from "../../config/cidr.ts";
import type { Lease } from "../../lease/lease.ts";
import type { LeaseDiff } from "../../lease/reconcile.ts";
import { errorText, type Logger } from "../../log.ts";
import {
  deleteLink,
  getLink,
  ip,
  listAddrs,
  listFdb,
  listLinks,
  listNeighbours,
  listRoutes,
} from "../../net/ip.ts";
import { confKey, ensureSysctl, readSysctl, writeSysctl } from "../../net/sysctl.ts";
import type { Backend, BackendAnnouncement, BackendContext, BackendHealth } from "../backend.ts";
import {
  attachDecap,
  attachTc,
  type Datapath,
  type DecapAttach,
  decapAttached,
  detachTc,
  loadDatapath,
  mapPinDir,
  ourTc,
  ourXdp,
} from "./datapath.ts";
import {
  DEFAULT_BRIDGE,
  endpointsFrom,
  overlayDeviceName,
  overlayPeerName,
  type RemoteEntry,
  remoteEntry,
  subnetKeyOf,
  vtepMacFor,
} from "./model.ts";

export { overlayDeviceName, vtepMacFor } from "./model.ts";

export interface EbpfVxlanOptions {
  /** The bridge local pods hang off (default cni0). */
  readonly bridge?: string;
  /** How often the bridge's ports and neighbours are re-read (default 1000 ms). */
  readonly scanIntervalMs?: number;
}

export function createEbpfVxlanBackend(ctx: BackendContext, opts: EbpfVxlanOptions = {}): Backend {
  const log = ctx.log;
  const ext = ctx.extIface;
  const vni = ctx.config.backend.vni;
  const port = ctx.config.backend.port;
  const mtu = ctx.config.backend.mtu ?? ext.mtu - VXLAN_OVERHEAD;
  const vtepMac = vtepMacFor(ctx.nodeName, ext.publicIp);
  const dev = overlayDeviceName(vni);
  const peer = overlayPeerName(vni);
  const bridge = opts.bridge ?? DEFAULT_BRIDGE;
  const decapKind = ctx.decap === "auto" ? "tc" : ctx.decap;
  /** Every key of the subnet map has this prefix length (the map is an exact-match hash). */
  const subnetLen = ctx.config.subnetLen;

  let dp: Datapath | null = null;
  let decap: DecapAttach | null = null;
  let devIfindex = 0;
  let bridgeIfindex: number | null = null;
  let local: Lease | null = null;
  /** What the subnet map holds for remote leases, by subnet address (every key is /subnetLen). */
  const programmed = new Map<Ip4, SubnetValue>();
  const keyOf = (addr: Ip4): SubnetKey => ({ prefixLen: subnetLen, addr });
  /** Local-subnet entries found in adopted maps: setLocal removes those that are not ours. */
  const adoptedLocal: SubnetKey[] = [];
  /** Leases per member node IP. */
  const members = new Map<Ip4, number>();
  /** Adopted maps may hold leases deleted while no agent ran: the first apply prunes them. */
  let pruneOnNextApply = false;
  let timer: ReturnType<typeof setInterval> | null = null;
  let scanning: Promise<void> = Promise.resolve();

  const need = (): Datapath => {
    if (!dp) throw new Error("ebpf-vxlan: prepare() has not run");
    return dp;
  };

  /**
   * The overlay device is one end of a NOARP veth pair (this kernel has no dummy
   * driver): its TC egress program encapsulates and redirects to the underlay before
   * the veth would transmit. The peer end is up (so the route is not "linkdown") but
   * inert: no forwarding, no IPv6; anything reaching it is dropped by the stack.
   */
  async function ensureOverlayDevice(): Promise<void> {
    let l = await getLink(dev);
    if (l && l.kind !== "veth") {
      log.warn("replacing an overlay device of another kind", { dev, kind: l.kind });
      await deleteLink(dev);
      l = null;
    }
    if (!l) {
      await ip(
        "link",
        "add",
        dev,
        "address",
        vtepMac,
        "mtu",
        String(mtu),
        "type",
        "veth",
        "peer",
        "name",
        peer,
        "mtu",
        String(mtu),
      );
      log.info("created overlay device", { dev, peer, mac: vtepMac, mtu });
    } else if (l.address !== vtepMac || l.mtu !== mtu) {
      await ip("link", "set", "dev", dev, "address", vtepMac, "mtu", String(mtu));
    }
    for (const name of [dev, peer]) {
      try {
        ensureSysctl(confKey(name, "disable_ipv6", "ipv6"), 1);
      } catch {}
      await ip("link", "set", "dev", name, "arp", "off");
    }
    ensureSysctl(confKey(peer, "forwarding"), 0);
    await ip("link", "set", "dev", peer, "up");
    await ip("link", "set", "dev", dev, "up");
    devIfindex = (await getLink(dev))!.ifindex;
  }

  function writeConfig(d: Datapath): void {
    let ttl = 64;
    try {
      ttl = Number(readSysctl("net.ipv4.ip_default_ttl")) || 64;
    } catch {}
    d.config.update(0, {
      flags: CFG_READY,
      localIp: ext.ifaceIp,
      underlayIfindex: ext.index,
      vni,
      port,
      overlayMtu: mtu,
      underlayMac: ext.mac,
      vtepMac,
      ttl,
      subnetLen,
    });
  }

  function hostSysctls(): void {
    // strict (1) drops decapsulated packets: their sources route via the overlay device.
    // The effective value is max(all, iface), so setting the interface to 2 suffices;
    // 0 (off) is left alone.
    const rp = confKey(ext.name, "rp_filter");
    if (readSysctl(rp) === "1") {
      writeSysctl(rp, 2);
      log.info(
        "set rp_filter loose (2) on the underlay: decapsulated packets come from remote pod subnets routed via the overlay device",
        {
          iface: ext.name,
          from: 1,
        },
      );
    }
    const fwd = ensureSysctl("net.ipv4.ip_forward", 1);
    if (fwd !== null) log.info("enabled IPv4 forwarding (pods are routed through this node)", { from: fwd });
  }

  /**
   * A restarted agent adopts the live maps through their pins; a pin removed by hand would
   * make that restart start empty. The live maps are still held here: pin them again.
   */
  function repairPins(d: Datapath): void {
    for (const m of [d.subnets, d.members, d.endpoints, d.config, d.counters]) {
      const pin = `${mapPinDir(ctx.bpffs)}/${m.name}`;
      if (existsSync(pin)) continue;
      pinFd(m.fd, pin);
      log.warn("a pinned map was removed; pinned the live map again", { pin });
    }
  }

  /** Re-attaches encap to the bridge when it (re)appears, and syncs the endpoint map. */
  async function scanBridgeOnce(): Promise<void> {
    const d = dp;
    if (!d) return;
    repairPins(d);
    const br = await getLink(bridge);
    if (!br) {
      bridgeIfindex = null;
      for (const k of d.endpoints.keys()) d.endpoints.delete(k);
      return;
    }
    if (bridgeIfindex !== br.ifindex || !ourTc(br.ifindex, bridge, "ingress")) {
      attachTc(br.ifindex, bridge, "ingress", d.progFd("encapFwd"), log);
      if (bridgeIfindex !== br.ifindex)
        log.info("attached encap to the pod bridge", { bridge, ifindex: br.ifindex });
      bridgeIfindex = br.ifindex;
    }
    const [ports, fdb, neighbours] = await Promise.all([
      listLinks({ master: bridge }),
      listFdb(bridge),
      listNeighbours(bridge),
    ]);
    const want = endpointsFrom({ bridge: br, ports, fdb, neighbours }, local?.subnet ?? null);
    // Entries the CNI plugin wrote for pods that have not talked yet stay while their veth
    // is still a port of the bridge and the IP is in our subnet; anything else goes. Before
    // our subnet is known (a restart, between prepare and setLocal) nothing is judged:
    // emptying the map then would send live pod traffic the slow way for a moment.
    const portIndexes = new Set(ports.map((p) => p.ifindex));
    if (local !== null) {
      const subnet = local.subnet;
      for (const [ip4, v] of d.endpoints.entries()) {
        const cniKept = portIndexes.has(v.ifindex) && containsIp(subnet, ip4);
        if (!want.has(ip4) && !cniKept) d.endpoints.delete(ip4);
      }
    }
    for (const [ip4, v] of want) {
      const cur = d.endpoints.lookup(ip4);
      if (!cur || cur.ifindex !== v.ifindex || cur.podMac !== v.podMac || cur.gwMac !== v.gwMac)
        d.endpoints.update(ip4, v);
    }
  }

  function scanBridge(): Promise<void> {
    scanning = scanning
      .then(scanBridgeOnce)
      .catch((e) => log.warn("bridge scan failed", { bridge, error: errorText(e) }));
    return scanning;
  }

  function adoptProgrammed(d: Datapath): void {
    const stale: SubnetKey[] = [];
    for (const [key, value] of d.subnets.entries()) {
      // keys of another prefix length (SubnetLen changed) are never looked up: drop them
      if (key.prefixLen !== subnetLen) stale.push(key);
      else if (value.flags & SUBNET_LOCAL) adoptedLocal.push(key);
      else programmed.set(key.addr, value);
    }
    if (stale.length > 0) {
      d.subnets.deleteBatch(stale);
      log.info("removed subnet entries of another prefix length", { count: stale.length, subnetLen });
    }
    for (const [ip4, n] of d.members.entries()) members.set(ip4, n);
  }

  return {
    name: "ebpf-vxlan",

    async prepare(): Promise<BackendAnnouncement> {
      // prepare() again (the agent's watchdog repairing a broken datapath) starts over
      // from the pins: release what the previous call holds first
      if (timer) clearInterval(timer);
      timer = null;
      await scanning;
      dp?.close();
      dp = null;
      programmed.clear();
      members.clear();
      adoptedLocal.length = 0;
      bridgeIfindex = null;
      const d = await loadDatapath(ctx.bpffs, log);
      dp = d;
      if (d.adopted) {
        adoptProgrammed(d);
        pruneOnNextApply = true;
        log.info("adopted the pinned datapath of a previous run", {
          bpffs: ctx.bpffs,
          subnets: programmed.size,
        });
      }
      writeConfig(d);
      await ensureOverlayDevice();
      attachTc(devIfindex, dev, "egress", d.progFd("encapHost"), log);
      decap = attachDecap(d, ext.index, ext.name, decapKind, log);
      log.info("datapath attached", {
        decap: decap.kind === "xdp" ? `xdp-${decap.mode}` : "tc",
        requested: ctx.decap,
        iface: ext.name,
        overlay: dev,
        vni,
        port,
        mtu,
        vtepMac,
      });
      hostSysctls();
      await scanBridge();
      timer = setInterval(() => void scanBridge(), opts.scanIntervalMs ?? 1000);
      timer.unref?.();
      return { backendType: "vxlan", vxlan: { VNI: vni, VtepMAC: vtepMac }, mtu };
    },

    async setLocal(lease: Lease): Promise<void> {
      const d = need();
      const key = subnetKeyOf(lease.subnet);
      if (local && local.key !== lease.key) {
        // our old subnet may already be programmed for the node that took it over
        const old = subnetKeyOf(local.subnet);
        if ((d.subnets.lookup(old)?.flags ?? 0) & SUBNET_LOCAL) d.subnets.delete(old);
      }
      for (const k of adoptedLocal.splice(0))
        if (k.addr !== key.addr || k.prefixLen !== key.prefixLen) d.subnets.delete(k);
      d.subnets.update(key, { nodeIp: ext.publicIp, vtepMac, flags: SUBNET_LOCAL });
      local = lease;
      const want = `${formatIp4(lease.subnet.ip)}/32`;
      for (const a of await listAddrs(dev))
        if (a.family === "inet" && `${a.local}/${a.prefixlen}` !== want)
          await ip("addr", "del", `${a.local}/${a.prefixlen}`, "dev", dev);
      await ip("addr", "replace", want, "dev", dev);
      const net = ctx.config.network;
      await ip("route", "replace", formatCidr(net), "via", formatIp4(net.ip), "dev", dev, "onlink");
      log.info("local subnet programmed", {
        subnet: formatCidr(lease.subnet),
        route: `${formatCidr(net)} via ${dev}`,
      });
      await scanBridge();
    },

    async apply(diff: LeaseDiff): Promise<void> {
      const d = need();
      const t0 = performance.now();
      // what the subnet map should gain (upserts) and lose (drop: subnet addresses)
      const upserts: RemoteEntry[] = [];
      const drop = new Set<Ip4>();
      for (const l of diff.remove) drop.add(l.subnet.ip);
      for (const list of [diff.add, diff.update])
        for (const l of list) {
          const r = remoteEntry(l, vni, subnetLen);
          if ("skip" in r) {
            log.warn("lease cannot be reached over VXLAN from this node; skipped", {
              subnet: l.key,
              reason: r.skip,
            });
            drop.add(l.subnet.ip);
          } else {
            upserts.push(r);
            drop.delete(r.key.addr);
          }
        }
      if (pruneOnNextApply) {
        const keep = new Set(upserts.map((r) => r.key.addr));
        for (const k of programmed.keys()) if (!keep.has(k)) drop.add(k);
      }
      // member counts after this diff, computed before any write; committed after
      const next = new Map<Ip4, number>();
      const count = (ip4: Ip4, by: number) => next.set(ip4, (next.get(ip4) ?? members.get(ip4) ?? 0) + by);
      const writes: Array<readonly [SubnetKey, SubnetValue]> = [];
      for (const r of upserts) {
        const old = programmed.get(r.key.addr);
        if (old && sameValue(old, r.value)) continue; // already in the map as wanted
        if (old?.nodeIp !== r.value.nodeIp) {
          if (old) count(old.nodeIp, -1);
          count(r.value.nodeIp, +1);
        }
        writes.push([r.key, r.value]);
      }
      const removed: Ip4[] = [];
      for (const addr of drop) {
        const old = programmed.get(addr);
        if (!old) continue;
        removed.push(addr);
        count(old.nodeIp, -1);
      }
      const memberUp: Array<readonly [Ip4, number]> = [];
      const memberGone: Ip4[] = [];
      for (const [ip4, n] of next) {
        if (n > 0) memberUp.push([ip4, n]);
        else if (members.has(ip4)) memberGone.push(ip4);
      }
      // members first: a node is accepted before we start sending to it; removed last
      d.members.updateBatch(memberUp);
      d.subnets.updateBatch(writes);
      for (const [k, v] of writes) programmed.set(k.addr, v);
      d.subnets.deleteBatch(removed.map(keyOf));
      for (const addr of removed) programmed.delete(addr);
      d.members.deleteBatch(memberGone);
      for (const [ip4, n] of next) {
        if (n > 0) members.set(ip4, n);
        else members.delete(ip4);
      }
      pruneOnNextApply = false;
      log.debug("maps updated", {
        upserts: writes.length,
        removed: removed.length,
        subnets: programmed.size,
        members: members.size,
        ms: Math.round((performance.now() - t0) * 10) / 10,
      });
    },

    async health(): Promise<BackendHealth> {
      if (!dp || !decap) return { ok: false, reason: "datapath not loaded" };
      if (!decapAttached(ext.index, ext.name, decap))
        return { ok: false, reason: `decap program not attached to ${ext.name}` };
      if (!ourTc(devIfindex, dev, "egress"))
        return { ok: false, reason: `encap program not attached to ${dev}` };

      if (local) {
        const net = formatCidr(ctx.config.network);
        const routes = await listRoutes({ dev }).catch(() => []);
        if (!routes.some((r) => r.dst === net))
          return { ok: false, reason: `route ${net} via ${dev} is missing` };
      }
      return { ok: true };
    },

    async counters(): Promise<Record<string, number>> {
      if (!dp) return {};
      return { ...dp.readCounters(), subnets: programmed.size, members: members.size };
    },

    async close(): Promise<void> {
      if (timer) clearInterval(timer);
      timer = null;
      await scanning;
      dp?.close();
      dp = null;
    },
  };
}

function sameValue(a: SubnetValue, b: SubnetValue): boolean {
  return a.nodeIp === b.nodeIp && a.vtepMac === b.vtepMac && a.flags === b.flags;
}

export interface CleanupOptions {
  readonly log: Logger;
  /** The node's bpffs pin directory. */
  readonly bpffs: string;
  readonly vni: number;
  /** The underlay interface (decap); all links are checked for our TC filters anyway. */
  readonly iface?: string;
  readonly bridge?: string;
}

/**
 * Removes everything the backend created: our TC filters and XDP program, the overlay
 * device (its route goes with it) and the pins. rp_filter and ip_forward are left as set.
 */
export async function cleanupEbpfVxlan(o: CleanupOptions): Promise<void> {
  for (const l of await listLinks()) {
    for (const dir of ["ingress", "egress"] as const) {
      if (detachTc(l.ifindex, l.ifname, dir)) o.log.info("detached tc program", { iface: l.ifname, dir });
    }
    if (ourXdp(l.ifindex, l.ifname)) {
      xdpDetach(l.ifindex, l.ifname);
      o.log.info("detached xdp program", { iface: l.ifname });
    }
  }
  const dev = overlayDeviceName(o.vni);
  if (await deleteLink(dev)) o.log.info("deleted overlay device", { dev });
  removePinDir(o.bpffs);
  o.log.info("removed pins", { dir: o.bpffs });
}
