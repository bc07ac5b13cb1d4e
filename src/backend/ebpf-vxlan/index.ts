/**
 * The `ebpf-vxlan` backend: VXLAN (flannel's wire format, BackendType "vxlan") built
 * and taken apart by eBPF programs out of BPF maps filled from the leases — no
 * per-node routes, neighbours or FDB entries.
 *
 * prepare() loads the embedded object with its maps pinned under --bpffs (adopting
 * the maps of a previous run), fills the config map, creates the overlay device
 * (overlay.ts), and attaches encap to the overlay device's TC egress and decap to the
 * underlay (TC ingress, or XDP). Attaching replaces the previous run's programs
 * atomically, so an agent restart drops nothing. apply() writes lease diffs to the
 * subnet and member maps as map-plan.ts plans them, in batches (one syscall per map and
 * kind of change: 10,000 leases are two batches). The pod bridge is followed
 * (bridge.ts) to keep encap on it and the endpoint map in step (endpoint-sync.ts).
 */
import { tcAttach, tcQuery } from "../../bpf/attach.ts";
import { formatCidr } from "../../config/cidr.ts";
import type { Lease } from "../../lease/lease.ts";
import type { LeaseDiff } from "../../lease/reconcile.ts";
import type { Backend, BackendAnnouncement, BackendContext, BackendHealth } from "../backend.ts";
import { DEFAULT_BRIDGE, podMtu } from "../facts.ts";
import { BridgeFollower } from "./bridge.ts";
import { attachDecap, type Datapath, type DecapAttach, decapAttached, loadDatapath } from "./datapath.ts";
import { EndpointSync } from "./endpoint-sync.ts";
import { EBPF_VXLAN_FACTS, vtepMacFor } from "./facts.ts";
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
  const { log, extIface: ext, config } = ctx;
  const scope = { vni: config.backend.vni, subnetLen: config.subnetLen };
  const mtu = podMtu(EBPF_VXLAN_FACTS, config.backend.mtu, ext.mtu);
  const vtepMac = vtepMacFor(ctx.nodeName, ext.publicIp);
  const overlay = new OverlayDevice({ log, vni: scope.vni, mac: vtepMac, mtu });
  const decapKind = ctx.decap === "auto" ? "tc" : ctx.decap;

  let dp: Datapath | null = null;
  let decap: DecapAttach | null = null;
  let local: Lease | null = null;
  /** What the subnet and member maps hold for remote leases. */
  const maps = new ProgrammedMaps();
  /** Local-subnet entries found in adopted maps: setLocal removes those that are not ours. */
  let adoptedLocal: ReturnType<ProgrammedMaps["adopt"]>["local"] = [];
  const endpoints = new EndpointSync(log);
  const follower = new BridgeFollower({
    bridge: opts.bridge ?? DEFAULT_BRIDGE,
    intervalMs: opts.scanIntervalMs ?? 1000,
    log,
    onView: (view) => {
      const d = dp;
      if (!d) return;
      repairPins(d, ctx.bpffs, log);
      endpoints.apply(view, d.endpoints, d.progFd("encapFwd"), local?.subnet ?? null);
    },
  });

  const need = (): Datapath => {
    if (!dp) throw new Error("ebpf-vxlan: prepare() has not run");
    return dp;
  };

  /** Loads (or adopts) the maps and programs; a second call starts over from the pins. */
  async function load(): Promise<Datapath> {
    await follower.stop();
    dp?.close();
    dp = null;
    maps.clear();
    adoptedLocal = [];
    endpoints.reset();
    const d = await loadDatapath(ctx.bpffs, log);
    dp = d;
    if (d.adopted) {
      const found = maps.adopt(d.subnets.entries(), d.members.entries(), scope.subnetLen);
      adoptedLocal = found.local;
      if (found.stale.length > 0) {
        d.subnets.deleteBatch(found.stale);
        log.info("removed subnet entries of another prefix length", {
          count: found.stale.length,
          subnetLen: scope.subnetLen,
        });
      }
      log.info("adopted the pinned datapath of a previous run", {
        bpffs: ctx.bpffs,
        subnets: maps.subnets.size,
      });
    }
    return d;
  }

  return {
    name: "ebpf-vxlan",

    async prepare(): Promise<BackendAnnouncement> {
      const d = await load();
      writeConfig(d.config, { ext, ...scope, port: config.backend.port, mtu, vtepMac });
      await overlay.ensure();
      tcAttach(overlay.ifindex, overlay.name, "egress", d.progFd("encapHost"));
      decap = attachDecap(d, ext.index, ext.name, decapKind, log);
      log.info("datapath attached", {
        decap: decap.kind === "xdp" ? `xdp-${decap.mode}` : "tc",
        requested: ctx.decap,
        iface: ext.name,
        overlay: overlay.name,
        vni: scope.vni,
        port: config.backend.port,
        mtu,
        vtepMac,
      });
      hostSysctls(ext, log);
      await follower.refresh();
      follower.start();
      return { backendType: "vxlan", vxlan: { VNI: scope.vni, VtepMAC: vtepMac }, mtu };
    },

    async setLocal(lease: Lease): Promise<void> {
      const d = need();
      const entry = planLocalEntry(local?.subnet ?? null, adoptedLocal, lease.subnet, {
        nodeIp: ext.publicIp,
        vtepMac,
      });
      for (const k of entry.deletes) d.subnets.delete(k);
      d.subnets.update(...entry.write);
      adoptedLocal = [];
      local = lease;
      const route = await overlay.setLocal(lease.subnet, config.network);
      log.info("local subnet programmed", { subnet: formatCidr(lease.subnet), route });
      await follower.refresh();
    },

    async apply(diff: LeaseDiff): Promise<void> {
      const d = need();
      const t0 = performance.now();
      const plan = planMapWrites(maps, diff, scope);
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
      maps.commit(plan);
      log.debug("maps updated", {
        upserts: plan.subnetWrites.length,
        removed: plan.subnetDeletes.length,
        subnets: maps.subnets.size,
        members: maps.members.size,
        ms: Math.round((performance.now() - t0) * 10) / 10,
      });
    },

    async health(): Promise<BackendHealth> {
      if (!dp || !decap) return { ok: false, reason: "datapath not loaded" };
      if (!decapAttached(ext.index, ext.name, decap))
        return { ok: false, reason: `decap program not attached to ${ext.name}` };
      if (tcQuery(overlay.ifindex, overlay.name, "egress") === null)
        return { ok: false, reason: `encap program not attached to ${overlay.name}` };
      if (local && !(await overlay.routePresent(config.network)))
        return { ok: false, reason: `route ${formatCidr(config.network)} via ${overlay.name} is missing` };
      return { ok: true };
    },

    async counters(): Promise<Record<string, number>> {
      if (!dp) return {};
      return { ...dp.readCounters(), subnets: maps.subnets.size, members: maps.members.size };
    },

    async close(): Promise<void> {
      await follower.stop();
      dp?.close();
      dp = null;
    },
  };
}
