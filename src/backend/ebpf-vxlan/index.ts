/**
 * The `ebpf-vxlan` backend: VXLAN (flannel's wire format, BackendType "vxlan") built
 * and taken apart by eBPF programs out of BPF maps filled from the leases — no
 * per-node routes, neighbours or FDB entries.
 *
 * prepare() loads the embedded object with its maps pinned under --bpffs (adopting
 * the maps of a previous run), fills the config map, creates the overlay device
 * (overlay.ts), and attaches encap to the overlay device's TC egress and decap to the
 * underlay (TC ingress, or XDP; TC through tcx, hooks.ts). Attaching replaces the
 * previous run's programs atomically, so an agent restart drops nothing. apply() writes
 * lease diffs to the subnet and member maps as map-plan.ts plans them, in batches (one
 * syscall per map and kind of change: 10,000 leases are two batches). The pod bridge is
 * followed by events (bridge.ts) to keep encap on it and on every known pod's veth, and
 * the endpoint map, in step (endpoint-sync.ts).
 *
 * Dual stack (EnableIPv6) adds the IPv6 twins: tartan_subnets6/members6 from the leases'
 * IPv6 subnets, PublicIPv6 and BackendV6Data (map-plan6.ts), IPv6 on the overlay device
 * with the IPv6 network's route, the host program on the device's peer too (IPv6 GSO
 * packets arrive there as segments), and one pod MTU for both families (underlay − 70,
 * as the vxlan backend). BackendV6Data announces the same VTEP MAC as BackendData.
 */
import type { Subnet6Key, SubnetKey } from "../../bpf/abi.ts";
import { formatCidr } from "../../config/cidr.ts";
import { formatCidr6 } from "../../config/cidr6.ts";
import type { Lease } from "../../lease/lease.ts";
import type { LeaseDiff } from "../../lease/reconcile.ts";
import { enableForwarding6 } from "../../net/sysctl.ts";
import type { Backend, BackendAnnouncement, BackendContext, BackendHealth } from "../backend.ts";
import { DEFAULT_BRIDGE, type PeerScope, podMtu } from "../facts.ts";
import { dualStackMtu } from "../vxlan/facts.ts";
import { BridgeFollower } from "./bridge.ts";
import { cleanupEbpfVxlan } from "./cleanup.ts";
import { attachDecap, type Datapath, type DecapAttach, decapAttached, loadDatapath } from "./datapath.ts";
import { type EndpointEntries, EndpointSync, type Endpoints6 } from "./endpoint-sync.ts";
import { EBPF_VXLAN_FACTS, vtepMacFor } from "./facts.ts";
import { attachTc, ourTc } from "./hooks.ts";
import { hostSysctls, writeConfig } from "./host.ts";
import { ProgrammedMaps, planLocalEntry, planMapWrites } from "./map-plan.ts";
import { ProgrammedMaps6, planLocalEntry6, planMapWrites6, type Scope6 } from "./map-plan6.ts";
import { OverlayDevice } from "./overlay.ts";
import { repairPins } from "./pins.ts";

export { type CleanupOptions, cleanupEbpfVxlan } from "./cleanup.ts";
export { overlayDeviceName, vtepMacFor } from "./facts.ts";

/** Both endpoint maps as read at one moment (the IPv6 one empty in an IPv4-only network). */
interface EndpointSnapshot {
  readonly v4: EndpointEntries;
  readonly v6: Endpoints6["before"];
}

export interface EbpfVxlanOptions {
  /** The bridge local pods hang off (default cni0). */
  readonly bridge?: string;
  /** How often the bridge is read in full whatever the events said (default 60 s). */
  readonly resyncMs?: number;
}

export function createEbpfVxlanBackend(ctx: BackendContext, opts: EbpfVxlanOptions = {}): Backend {
  return new EbpfVxlanBackend(ctx, opts);
}

class EbpfVxlanBackend implements Backend {
  readonly name = "ebpf-vxlan";
  readonly #ctx: BackendContext;
  readonly #scope: PeerScope;
  readonly #mtu: number;
  readonly #vtepMac: string;
  readonly #overlay: OverlayDevice;
  #dp: Datapath | null = null;
  #decap: DecapAttach | null = null;
  #local: Lease | null = null;
  /** What the subnet and member maps hold for remote leases. */
  readonly #maps = new ProgrammedMaps();
  /** Local-subnet entries found in adopted maps: setLocal removes those that are not ours. */
  #adoptedLocal: SubnetKey[] = [];
  /** Dual stack: the IPv6 scope; null in an IPv4-only network. */
  readonly #scope6: Scope6 | null;
  readonly #maps6 = new ProgrammedMaps6();
  #adoptedLocal6: Subnet6Key[] = [];
  readonly #endpoints: EndpointSync;
  readonly #follower: BridgeFollower<EndpointSnapshot>;

  constructor(ctx: BackendContext, opts: EbpfVxlanOptions) {
    const { log, extIface: ext, config } = ctx;
    this.#ctx = ctx;
    this.#scope = { vni: config.backend.vni, subnetLen: config.subnetLen };
    const v6 = config.ipv6 ?? null;
    this.#scope6 = v6 === null ? null : { vni: config.backend.vni, subnet6Len: v6.subnetLen };
    // dual stack: one MTU that fits IPv6 VXLAN too (underlay − 70), as the vxlan backend's pods get
    this.#mtu =
      v6 === null
        ? podMtu(EBPF_VXLAN_FACTS, config.backend.mtu, ext.mtu)
        : dualStackMtu(config.backend.mtu, ext.mtu).pods;
    this.#vtepMac = vtepMacFor(ctx.nodeName, ext.publicIp);
    this.#overlay = new OverlayDevice({
      log,
      vni: this.#scope.vni,
      mac: this.#vtepMac,
      mtu: this.#mtu,
      dual: v6 !== null,
    });
    this.#endpoints = new EndpointSync(log);
    this.#follower = new BridgeFollower<EndpointSnapshot>({
      bridge: opts.bridge ?? DEFAULT_BRIDGE,
      ...(opts.resyncMs !== undefined ? { resyncMs: opts.resyncMs } : {}),
      log,
      snapshot: () => ({
        v4: this.#dp?.endpoints.entries() ?? [],
        v6: this.#scope6 !== null ? (this.#dp?.endpoints6.entries() ?? []) : [],
      }),
      onView: (view, before) => {
        const d = this.#dp;
        if (!d) return;
        const prog = (name: "encapFwd" | "encapPod") => ({ fd: d.progFd(name), id: d.progId(name) });
        this.#endpoints.apply(
          view,
          before.v4,
          d.endpoints,
          { bridge: prog("encapFwd"), pod: prog("encapPod") },
          this.#local?.subnet ?? null,
          this.#scope6 !== null
            ? { before: before.v6, map: d.endpoints6, subnet6: this.#local?.subnet6 ?? null }
            : null,
        );
      },
    });
  }

  #need(): Datapath {
    if (!this.#dp) throw new Error("ebpf-vxlan: prepare() has not run");
    return this.#dp;
  }

  /** Loads (or adopts) the maps and programs; a second call starts over from the pins. */
  async #load(): Promise<Datapath> {
    const { log, bpffs } = this.#ctx;
    await this.#follower.stop();
    this.#dp?.close();
    this.#dp = null;
    this.#maps.clear();
    this.#maps6.clear();
    this.#adoptedLocal = [];
    this.#adoptedLocal6 = [];
    this.#endpoints.reset();
    const d = await loadDatapath(bpffs, log);
    this.#dp = d;
    if (!d.adopted) return d;
    const found = this.#maps.adopt(d.subnets.entries(), d.members.entries(), this.#scope.subnetLen);
    this.#adoptedLocal = found.local;
    if (found.stale.length > 0) {
      d.subnets.deleteBatch(found.stale);
      log.info("removed subnet entries of another prefix length", {
        count: found.stale.length,
        subnetLen: this.#scope.subnetLen,
      });
    }
    const found6 = this.#maps6.adopt(
      d.subnets6.entries(),
      d.members6.entries(),
      this.#scope6?.subnet6Len ?? -1,
    );
    this.#adoptedLocal6 = found6.local;
    if (found6.stale.length > 0) d.subnets6.deleteBatch(found6.stale);
    log.info("adopted the pinned datapath of a previous run", {
      bpffs,
      subnets: this.#maps.subnets.size,
      subnets6: this.#maps6.subnets.size,
    });
    return d;
  }

  async prepare(): Promise<BackendAnnouncement> {
    const { log, extIface: ext, config } = this.#ctx;
    const { vni } = this.#scope;
    const port = config.backend.port;
    const d = await this.#load();
    await this.#overlay.ensure();
    const v6 = this.#v6Settings();
    writeConfig(d.config, { ext, ...this.#scope, port, mtu: this.#mtu, vtepMac: this.#vtepMac, v6 });
    attachTc(this.#overlay.ifindex, this.#overlay.name, "egress", d.progFd("encapHost"), log);
    if (v6 !== null) {
      // IPv6 GSO packets reach the peer as segments: its ingress encapsulates them
      attachTc(this.#overlay.peerIfindex, this.#overlay.peer, "ingress", d.progFd("encapHost"), log);
      enableForwarding6(log, ext.name);
    }
    const decapKind = this.#ctx.decap === "auto" ? "tc" : this.#ctx.decap;
    const decap = attachDecap(d, ext.index, ext.name, decapKind, log);
    this.#decap = decap;
    log.info("datapath attached", {
      decap: decap.kind === "xdp" ? `xdp-${decap.mode}` : "tc",
      requested: this.#ctx.decap,
      iface: ext.name,
      overlay: this.#overlay.name,
      vni,
      port,
      mtu: this.#mtu,
      vtepMac: this.#vtepMac,
    });
    hostSysctls(ext, log);
    await this.#follower.refresh();
    this.#follower.start();
    const vxlan = { VNI: vni, VtepMAC: this.#vtepMac };
    return { backendType: "vxlan", vxlan, ...(v6 !== null ? { vxlan6: vxlan } : {}), mtu: this.#mtu };
  }

  /** Dual stack: what the config map needs of the IPv6 underlay; null in an IPv4-only network. */
  #v6Settings() {
    const { extIface: ext } = this.#ctx;
    if (this.#scope6 === null) return null;
    const local6 = ext.ifaceIpv6 ?? null;
    if (local6 === null)
      throw new Error(`ebpf-vxlan: dual stack needs an IPv6 address on ${ext.name}; it has none`);
    return { localIp6: local6, subnet6Len: this.#scope6.subnet6Len, overlayIfindex: this.#overlay.ifindex };
  }

  async setLocal(lease: Lease): Promise<void> {
    const d = this.#need();
    const entry = planLocalEntry(this.#maps, this.#local?.subnet ?? null, this.#adoptedLocal, lease.subnet, {
      nodeIp: this.#ctx.extIface.publicIp,
      vtepMac: this.#vtepMac,
    });
    for (const k of entry.deletes) d.subnets.delete(k);
    d.subnets.update(...entry.write);
    // the node whose lease held our new subnet: one lease fewer (no longer a member at none)
    const t = entry.takeover;
    if (t && t.members > 0) d.members.update(t.nodeIp, t.members);
    else if (t) d.members.delete(t.nodeIp);
    this.#maps.commitLocal(entry);
    this.#adoptedLocal = [];
    this.#local = lease;
    const route = await this.#overlay.setLocal(lease.subnet, this.#ctx.config.network);
    this.#ctx.log.info("local subnet programmed", { subnet: formatCidr(lease.subnet), route });
    await this.#setLocal6(d, lease);
    await this.#follower.refresh();
  }

  /** Dual stack: our IPv6 subnet's local entry, the device's IPv6 address and the IPv6 network's route. */
  async #setLocal6(d: Datapath, lease: Lease): Promise<void> {
    const sn6 = lease.subnet6 ?? null;
    const net6 = this.#ctx.config.ipv6 ?? null;
    if (this.#scope6 === null || sn6 === null || net6 === null) return;
    const local6 = this.#ctx.extIface.publicIpv6 ?? this.#ctx.extIface.ifaceIpv6!;
    const entry = planLocalEntry6(this.#local?.subnet6 ?? null, this.#adoptedLocal6, sn6, {
      nodeIp6: local6,
      vtepMac: this.#vtepMac,
    });
    for (const k of entry.deletes) d.subnets6.delete(k);
    d.subnets6.update(...entry.write);
    this.#adoptedLocal6 = [];
    const route = await this.#overlay.setLocal6(sn6, net6.network);
    this.#ctx.log.info("local IPv6 subnet programmed", { subnet6: formatCidr6(sn6), route });
  }

  async apply(diff: LeaseDiff): Promise<void> {
    const d = this.#need();
    const log = this.#ctx.log;
    const t0 = performance.now();
    const plan = planMapWrites(this.#maps, diff, this.#scope);
    for (const s of plan.skipped)
      log.warn("lease cannot be reached over VXLAN from this node; skipped", {
        subnet: s.lease.key,
        reason: s.reason,
      });
    // members first: a node is accepted before we start sending to it; removed last
    d.members.updateBatch(plan.memberWrites);
    d.subnets.updateBatch(plan.subnetWrites);
    d.subnets.deleteBatch(plan.subnetDeletes);
    d.members.deleteBatch(plan.memberDeletes);
    this.#maps.commit(plan);
    if (this.#scope6 !== null) {
      const plan6 = planMapWrites6(this.#maps6, diff, this.#scope6);
      for (const s of plan6.skipped)
        log.warn("lease's IPv6 side cannot be reached over VXLAN from this node; skipped", {
          subnet: s.lease.key,
          reason: s.reason,
        });
      d.members6.updateBatch(plan6.memberWrites);
      d.subnets6.updateBatch(plan6.subnetWrites);
      d.subnets6.deleteBatch(plan6.subnetDeletes);
      d.members6.deleteBatch(plan6.memberDeletes);
      this.#maps6.commit(plan6);
    }
    log.debug("maps updated", {
      upserts: plan.subnetWrites.length,
      removed: plan.subnetDeletes.length,
      subnets: this.#maps.subnets.size,
      members: this.#maps.members.size,
      subnets6: this.#maps6.subnets.size,
      ms: Math.round((performance.now() - t0) * 10) / 10,
    });
  }

  /** Reports what would need a rebuild; a removed pin it repairs first (no rebuild needed: the maps are live here). */
  async health(): Promise<BackendHealth> {
    const { extIface: ext, config } = this.#ctx;
    const overlay = this.#overlay;
    if (!this.#dp || !this.#decap) return { ok: false, reason: "datapath not loaded" };
    repairPins(this.#dp, this.#ctx.bpffs, this.#ctx.log);
    if (!decapAttached(ext.index, ext.name, this.#decap))
      return { ok: false, reason: `decap program not attached to ${ext.name}` };
    if (!ourTc(overlay.ifindex, overlay.name, "egress"))
      return { ok: false, reason: `encap program not attached to ${overlay.name}` };
    if (this.#local && !overlay.routePresent(config.network))
      return { ok: false, reason: `route ${formatCidr(config.network)} via ${overlay.name} is missing` };
    if (this.#scope6 !== null && !ourTc(overlay.peerIfindex, overlay.peer, "ingress"))
      return { ok: false, reason: `encap program not attached to ${overlay.peer} (IPv6 segments)` };
    return { ok: true };
  }

  async counters(): Promise<Record<string, number>> {
    if (!this.#dp) return {};
    return {
      ...this.#dp.readCounters(),
      subnets: this.#maps.subnets.size,
      members: this.#maps.members.size,
      ...(this.#scope6 !== null
        ? { subnets6: this.#maps6.subnets.size, members6: this.#maps6.members.size }
        : {}),
    };
  }

  async close(): Promise<void> {
    await this.#follower.stop();
    this.#dp?.close();
    this.#dp = null;
  }

  async abandon(): Promise<void> {
    const fresh = this.#dp !== null && !this.#dp.adopted; // an adopted datapath carries traffic: keep it
    await this.close();
    if (fresh)
      await cleanupEbpfVxlan({
        log: this.#ctx.log,
        bpffs: this.#ctx.bpffs,
        vni: this.#scope.vni,
        iface: this.#ctx.extIface.name,
      });
  }
}
