/**
 * Keeps the datapath in step with the pod bridge: encap on the bridge's TC ingress (the
 * fallback for every pod), the pod program on the TC ingress of each known pod's
 * host-side veth (the send fast path), and the endpoint map holding the pods on the
 * bridge (planEndpoints; in dual stack tartan_endpoints6 too, planEndpoints6). TC hooks are attached through tcx (hooks.ts: no clsact qdisc,
 * whose creation stalls the device). A hook is (re)attached when our program is not the
 * one there: a new device, a program removed by hand, or the previous agent run's
 * program, which is replaced atomically (no moment without a program). Fed the views of
 * BridgeFollower. The CNI plugin's sink attaches through attachBridgeEncap and
 * attachPodEncap at ADD.
 */
import type { EndpointValue } from "../../bpf/abi.ts";
import type { BpfMap } from "../../bpf/map.ts";
import type { Cidr, Ip4 } from "../../config/cidr.ts";
import type { Cidr6, Ip6 } from "../../config/cidr6.ts";
import { errorText, type Logger } from "../../log.ts";
import { type BridgeView, planEndpoints, planEndpoints6 } from "./endpoints.ts";
import { attachTc, detachTc, ourTc, ourTcPrograms } from "./hooks.ts";

/** A loaded program: its fd (to attach) and kernel id (to recognise it attached). */
export interface ProgramRef {
  readonly fd: number;
  readonly id: number;
}

export type TcEnsured = "kept" | "attached" | "replaced";

/**
 * Makes `prog` our one TC ingress program on the device: kept when it is there alone,
 * else attached (atomically replacing ours there, tcx or an older agent's clsact filter).
 */
export function ensureTcIngress(ifindex: number, name: string, prog: ProgramRef, log?: Logger): TcEnsured {
  const there = ourTcPrograms(ifindex, name, "ingress");
  if (there.length === 1 && there[0] === prog.id) return "kept";
  attachTc(ifindex, name, "ingress", prog.fd, log);
  return there.length === 0 ? "attached" : "replaced";
}

/** Attaches encap (`progFd`) to the bridge's TC ingress unless a program of ours is there (the CNI plugin, first pod on a new bridge). */
export function attachBridgeEncap(ifindex: number, name: string, progFd: number, log?: Logger): boolean {
  if (ourTc(ifindex, name, "ingress")) return false;
  attachTc(ifindex, name, "ingress", progFd, log);
  return true;
}

/** Attaches the pod program (`progFd`) to a pod's host-side veth (the CNI plugin at ADD, after writing the endpoint). */
export function attachPodEncap(ifindex: number, name: string, progFd: number, log?: Logger): void {
  attachTc(ifindex, name, "ingress", progFd, log);
}

/** The endpoint map's entries, as read at one moment. */
export type EndpointEntries = ReadonlyArray<readonly [Ip4, EndpointValue]>;

/** Dual stack: tartan_endpoints6 as read at the same moment, the map, and our IPv6 subnet. */
export interface Endpoints6 {
  readonly before: ReadonlyArray<readonly [Ip6, EndpointValue]>;
  readonly map: BpfMap<Ip6, EndpointValue>;
  readonly subnet6: Cidr6 | null;
}

export interface EncapPrograms {
  /** tartan_encap_fwd, on the bridge. */
  readonly bridge: ProgramRef;
  /** tartan_encap_pod, on each pod veth. */
  readonly pod: ProgramRef;
}

export class EndpointSync {
  /** Pod veths that carry the pod program: ifindex → name. */
  #podVeths = new Map<number, string>();
  /** Veths the pod program could not be attached to (said once, not on every read). */
  readonly #failed = new Set<number>();

  constructor(private readonly log: Logger) {}

  /** Forget what was attached: the next view checks every hook again (a reloaded datapath has new programs). */
  reset(): void {
    this.#podVeths.clear();
    this.#failed.clear();
  }

  /**
   * Brings the programs and the endpoint map to `view` (null: no bridge, no local pods).
   * `before` is the endpoint map as it was when the view was read: only its entries can
   * be found stale (one the CNI plugin wrote during the read stays).
   */
  apply(
    view: BridgeView | null,
    before: EndpointEntries,
    endpoints: BpfMap<Ip4, EndpointValue>,
    progs: EncapPrograms,
    subnet: Cidr | null,
    v6: Endpoints6 | null = null,
  ): void {
    if (!view) {
      for (const [k] of before) endpoints.delete(k);
      for (const [k] of v6?.before ?? []) v6!.map.delete(k);
      this.#podVeths.clear();
      return;
    }
    const br = view.bridge;
    const how = ensureTcIngress(br.ifindex, br.ifname, progs.bridge, this.log);
    if (how !== "kept")
      this.log.info("attached encap to the pod bridge", { bridge: br.ifname, ifindex: br.ifindex, how });
    const plan = planEndpoints(before, view, subnet);
    for (const ip4 of plan.deletes) endpoints.delete(ip4);
    for (const [ip4, v] of plan.writes) endpoints.update(ip4, v);
    if (v6) {
      const plan6 = planEndpoints6(v6.before, view, v6.subnet6);
      for (const ip6 of plan6.deletes) v6.map.delete(ip6);
      for (const [ip6, v] of plan6.writes) v6.map.update(ip6, v);
    }
    this.#podPrograms(view, endpoints, progs.pod);
  }

  /** The pod program on the veth of every pod the map holds; off veths that no longer hold one. */
  #podPrograms(view: BridgeView, endpoints: BpfMap<Ip4, EndpointValue>, prog: ProgramRef): void {
    const veths = new Map(view.ports.filter((p) => p.kind === "veth").map((p) => [p.ifindex, p.ifname]));
    const want = new Map<number, string>();
    for (const [, v] of endpoints.entries()) {
      const name = veths.get(v.ifindex);
      if (name !== undefined) want.set(v.ifindex, name);
    }
    for (const [ifindex, name] of want) {
      try {
        const how = ensureTcIngress(ifindex, name, prog, this.log);
        if (how !== "kept") this.log.debug("pod fast path attached", { veth: name, ifindex, how });
        this.#failed.delete(ifindex);
      } catch (e) {
        want.delete(ifindex);
        if (this.#failed.has(ifindex)) continue;
        this.#failed.add(ifindex);
        this.log.warn("cannot attach the pod fast path to a veth; its pod is encapsulated at the bridge", {
          veth: name,
          ifindex,
          error: errorText(e),
        });
      }
    }
    for (const [ifindex, name] of this.#podVeths) {
      if (want.has(ifindex) || !veths.has(ifindex)) continue;
      if (detachTc(ifindex, name, "ingress"))
        this.log.debug("pod fast path detached from a veth that holds no known pod", { veth: name, ifindex });
    }
    this.#podVeths = want;
  }
}
