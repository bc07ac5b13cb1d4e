/**
 * The hook between the CNI plugin and a datapath that delivers straight into pods (the
 * ebpf-vxlan backend's endpoint maps): after a successful ADD the plugin reports the pod
 * (its IPv4 address, and its IPv6 one in dual stack → host-side veth ifindex and the pod's
 * MAC), and before DEL it withdraws it. A
 * sink's failure never fails ADD or DEL: the slow path through the bridge still works,
 * and the agent can pick the pod up later.
 */
import type { Logger } from "../log.ts";

export interface Endpoint {
  /** The pod's IPv4 address (no prefix length). */
  readonly ip: string;
  /** The pod's IPv6 address in dual stack (no prefix length). */
  readonly ip6?: string;
  /** ifindex of the host-side veth, in the node's network namespace. */
  readonly ifindex: number;
  /** Name of the host-side veth. */
  readonly hostVeth: string;
  /** The pod interface's MAC address (lower-case, colon-separated). */
  readonly mac: string;
  /** The host-side veth's MAC address, when the delegate reported it. */
  readonly hostMac?: string;
  readonly containerId: string;
  readonly ifname: string;
  readonly netns: string;
  /** The bridge the veth is a port of, when the delegate is `bridge`. */
  readonly bridge?: string;
}

export interface EndpointSink {
  add(ep: Endpoint): Promise<void>;
  /** Withdraws the pod's IPv4 address and, when given, its IPv6 one. */
  remove(ip: string, ip6?: string): Promise<void>;
}

/** What a sink factory is given: the plugin's network config (its extra keys too) and where to say what it did. */
export interface EndpointSinkContext {
  readonly conf: Readonly<Record<string, unknown>>;
  /** The plugin's log (stderr, which the runtime keeps); a sink says here why a pod was not registered. */
  readonly log?: Logger;
}

export type EndpointSinkFactory = (ctx: EndpointSinkContext) => EndpointSink;

export const noopEndpointSink: EndpointSink = {
  add: async () => {},
  remove: async () => {},
};
