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
 * syscall per map and kind of change: 10,000 leases are two batches). The pod bridge is followed
 * (bridge.ts) to keep encap on it and the endpoint map in step (endpoint-sync.ts).
 */
import type { SubnetKey } from "../../bpf/abi.ts";
import { formatCidr } from "../../config/cidr.ts";
import type { Lease } from "../../lease/lease.ts";
import type { LeaseDiff } from "../../lease/reconcile.ts";
import type { Backend, BackendAnnouncement, BackendContext, BackendHealth } from "../backend.ts";
import { DEFAULT_BRIDGE, type PeerScope, podMtu } from "../facts.ts";
import { BridgeFollower } from "./bridge.ts";
import { cleanupEbpfVxlan } from "./cleanup.ts";
import { attachDecap, type Datapath, type DecapAttach, decapAttached, loadDatapath } from "./datapath.ts";
import { EndpointSync } from "./endpoint-sync.ts";
import { EBPF_VXLAN_FACTS, vtepMacFor } from "./facts.ts";
import { attachTc, ourTc } from "./hooks.ts";
import { hostSysctls, writeConfig } from "./host.ts";
import { ProgrammedMaps, planLocalEntry, planMapWrites } from "./map-plan.ts";
import { OverlayDevice } from "./overlay.ts";
import { repairPins } from "./pins.ts";

export { type CleanupOptions, cleanupEbpfVxlan } from "./cleanup.ts";
export { overlayDeviceName, vtepMacFor } from "./facts.ts";

export interface EbpfVxlanOptions {
  /** The bridge local pods hang off (default cni0). */
  readonly bridge?: string;
  /** How often the bridge's ports and neighbours are re-read (default 1000 ms). */
  readonly scanIntervalMs?: number;
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
  readonly #endpoints: EndpointSync;
  readonly #follower: BridgeFollower;

  constructor(ctx: BackendContext, opts: EbpfVxlanOptions) {
    const { log, extIface: ext, config } = ctx;
    this.#ctx = ctx;
    this.#scope = { vni: config.backend.vni, subnetLen: config.subnetLen };
    this.#mtu = podMtu(EBPF_VXLAN_FACTS, config.backend.mtu, ext.mtu);
    this.#vtepMac = vtepMacFor(ctx.nodeName, ext.publicIp);
    this.#overlay = new OverlayDevice({ log, vni: this.#scope.vni, mac: this.#vtepMac, mtu: this.#mtu });
    this.#endpoints = new EndpointSync(log);
    this.#follower = new BridgeFollower({
      bridge: opts.bridge ?? DEFAULT_BRIDGE,
      intervalMs: opts.scanIntervalMs ?? 1000,
      log,
      onView: (view) => {
        const d = this.#dp;
        if (!d) return;
        repairPins(d, ctx.bpffs, log);
        this.#endpoints.apply(view, d.endpoints, d.progFd("encapFwd"), this.#local?.subnet ?? null);
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
    this.#adoptedLocal = [];
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
    log.info("adopted the pinned datapath of a previous run", { bpffs, subnets: this.#maps.subnets.size });
    return d;
  }

  async prepare(): Promise<BackendAnnouncement> {
    const { log, extIface: ext, config } = this.#ctx;
    const { vni } = this.#scope;
    const port = config.backend.port;
    const d = await this.#load();
    writeConfig(d.config, { ext, ...this.#scope, port, mtu: this.#mtu, vtepMac: this.#vtepMac });
    await this.#overlay.ensure();
    attachTc(this.#overlay.ifindex, this.#overlay.name, "egress", d.progFd("encapHost"), log);
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
    return { backendType: "vxlan", vxlan: { VNI: vni, VtepMAC: this.#vtepMac }, mtu: this.#mtu };
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
    await this.#follower.refresh();
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
    log.debug("maps updated", {
      upserts: plan.subnetWrites.length,
      removed: plan.subnetDeletes.length,
      subnets: this.#maps.subnets.size,
      members: this.#maps.members.size,
      ms: Math.round((performance.now() - t0) * 10) / 10,
    });
  }

  async health(): Promise<BackendHealth> {
    const { extIface: ext, config } = this.#ctx;
    const overlay = this.#overlay;
    if (!this.#dp || !this.#decap) return { ok: false, reason: "datapath not loaded" };
    if (!decapAttached(ext.index, ext.name, this.#decap))
      return { ok: false, reason: `decap program not attached to ${ext.name}` };
    if (!ourTc(overlay.ifindex, overlay.name, "egress"))
      return { ok: false, reason: `encap program not attached to ${overlay.name}` };
    if (this.#local && !(await overlay.routePresent(config.network)))
      return { ok: false, reason: `route ${formatCidr(config.network)} via ${overlay.name} is missing` };
    return { ok: true };
  }

  async counters(): Promise<Record<string, number>> {
    if (!this.#dp) return {};
    return { ...this.#dp.readCounters(), subnets: this.#maps.subnets.size, members: this.#maps.members.size };
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
