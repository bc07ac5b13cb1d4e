/**
 * Keeps the datapath in step with the pod bridge: encap attached to the bridge's TC
 * ingress (again when the bridge is recreated or our program removed), and the endpoint
 * map holding the pods on it (planEndpoints). Fed the views of BridgeFollower. The CNI
 * plugin's sink uses attachBridgeEncap too, for the first pod on a new bridge.
 */
import type { EndpointValue } from "../../bpf/abi.ts";
import type { BpfMap } from "../../bpf/map.ts";
import type { Cidr, Ip4 } from "../../config/cidr.ts";
import type { Logger } from "../../log.ts";
import { type BridgeView, planEndpoints } from "./endpoints.ts";
import { attachTc, ourTc } from "./hooks.ts";

/** Attaches encap (`progFd`) to the bridge's TC ingress when `force`, or when no program of ours is there. */
export function attachBridgeEncap(
  ifindex: number,
  name: string,
  progFd: number,
  force = false,
  log?: Logger,
): boolean {
  if (!force && ourTc(ifindex, name, "ingress")) return false;
  attachTc(ifindex, name, "ingress", progFd, log);
  return true;
}

export class EndpointSync {
  /** The bridge encap was last attached to (a recreated bridge has a new ifindex). */
  #bridgeIfindex: number | null = null;

  constructor(private readonly log: Logger) {}

  /** Forget the bridge: the next view attaches encap again (a reloaded datapath has new programs). */
  reset(): void {
    this.#bridgeIfindex = null;
  }

  /** Brings encap and the endpoint map to `view` (null: no bridge, no local pods). */
  apply(
    view: BridgeView | null,
    endpoints: BpfMap<Ip4, EndpointValue>,
    encapFd: number,
    subnet: Cidr | null,
  ): void {
    if (!view) {
      this.#bridgeIfindex = null;
      for (const k of endpoints.keys()) endpoints.delete(k);
      return;
    }
    const br = view.bridge;
    const moved = this.#bridgeIfindex !== br.ifindex;
    if (attachBridgeEncap(br.ifindex, br.ifname, encapFd, moved, this.log) && moved)
      this.log.info("attached encap to the pod bridge", { bridge: br.ifname, ifindex: br.ifindex });
    this.#bridgeIfindex = br.ifindex;
    const plan = planEndpoints(endpoints.entries(), view, subnet);
    for (const ip4 of plan.deletes) endpoints.delete(ip4);
    for (const [ip4, v] of plan.writes) endpoints.update(ip4, v);
  }
}
