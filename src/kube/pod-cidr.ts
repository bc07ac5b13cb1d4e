/**
 * A Node's subnets: `spec.podCIDRs` (one per family, in either order, as
 * kube-controller-manager assigns them), else `spec.podCIDR`; and our own Node's checked
 * as flannel's kube subnet manager checks them — the IPv4 one inside Network, and in a
 * dual-stack network (EnableIPv6) the IPv6 one inside IPv6Network. Pure.
 */
import { type Cidr, containsCidr, formatCidr, parseCidr } from "../config/cidr.ts";
import { type Cidr6, containsCidr6, formatCidr6, parseCidr6 } from "../config/cidr6.ts";
import type { NetworkConfig } from "../config/network.ts";

export interface PodCidrs {
  readonly v4: Cidr | null;
  readonly v6: Cidr6 | null;
}

export type PodCidrResult =
  | { readonly ok: true; readonly cidrs: PodCidrs }
  /** `missing`: none assigned yet; `invalid`: assigned but not usable (`why` says how). */
  | { readonly ok: false; readonly missing: boolean; readonly why: string };

/** The pod CIDRs of a Node spec, per family (flannel's rules: at most two, one per family). */
export function selectPodCidrs(spec: { podCIDR?: unknown; podCIDRs?: unknown } | undefined): PodCidrResult {
  let list: unknown[] = [];
  if (Array.isArray(spec?.podCIDRs) && spec.podCIDRs.length > 0) list = spec.podCIDRs;
  else if (typeof spec?.podCIDR === "string" && spec.podCIDR !== "") list = [spec.podCIDR];
  if (list.length === 0) return { ok: false, missing: true, why: "no podCIDR assigned" };
  if (list.length > 2)
    return { ok: false, missing: false, why: `${list.length} podCIDRs: at most one per family (IPv4, IPv6)` };
  let v4: Cidr | null = null;
  let v6: Cidr6 | null = null;
  for (const item of list) {
    const text = typeof item === "string" ? item : "";
    // flannel (Go's net.ParseCIDR) masks host bits away
    const c4 = parseCidr(text, false);
    const c6 = c4 ? null : parseCidr6(text, false);
    if (!c4 && !c6)
      return { ok: false, missing: false, why: `podCIDR ${JSON.stringify(item)} is not a CIDR` };
    if ((c4 && v4) || (c6 && v6))
      return { ok: false, missing: false, why: `podCIDRs ${JSON.stringify(list)} name one family twice` };
    if (c4) v4 = c4;
    else v6 = c6;
  }
  return { ok: true, cidrs: { v4, v6 } };
}

/** null when `sn` lies inside `network`; else why not, for a log line. */
export function outsideNetwork(network: Cidr, sn: Cidr): string | null {
  return containsCidr(network, sn)
    ? null
    : `podCIDR ${formatCidr(sn)} is not inside the network ${formatCidr(network)}`;
}

/** null when `sn` lies inside `network6` (IPv6Network); else why not, for a log line. */
export function outsideNetwork6(network6: Cidr6, sn: Cidr6): string | null {
  return containsCidr6(network6, sn)
    ? null
    : `IPv6 podCIDR ${formatCidr6(sn)} is not inside the IPv6 network ${formatCidr6(network6)}`;
}

/** The networks our subnets must lie in: Network, and IPv6Network when EnableIPv6 (else null). */
export interface PodNetworks {
  readonly network: Cidr;
  readonly network6: Cidr6 | null;
}

/** The networks Nodes' podCIDRs must lie in, from the network config. */
export function podNetworks(c: NetworkConfig): PodNetworks {
  return { network: c.network, network6: c.ipv6?.network ?? null };
}

/** The `--cluster-cidr` kube-controller-manager needs for these networks ("v4" or "v4,v6"). */
export function clusterCidrFlag(n: PodNetworks): string {
  return n.network6 ? `${formatCidr(n.network)},${formatCidr6(n.network6)}` : formatCidr(n.network);
}

export type OwnSubnets =
  | { readonly ok: true; readonly v4: Cidr; readonly v6: Cidr6 | null }
  /**
   * `waiting`: kube-controller-manager has not assigned (all of) them yet — the agent waits;
   * otherwise an operator must act. `why` is the one line to log, naming the Node.
   */
  | { readonly ok: false; readonly waiting: boolean; readonly why: string };

/**
 * Our Node's subnets as the agent takes them: the IPv4 podCIDR inside Network, and with
 * EnableIPv6 the IPv6 podCIDR inside IPv6Network (a config without EnableIPv6 passes an
 * IPv6 podCIDR over, as flannel does). `configPath` names the net-conf.json in messages.
 */
export function ownSubnets(
  node: string,
  spec: { podCIDR?: unknown; podCIDRs?: unknown } | undefined,
  nets: PodNetworks,
  configPath: string,
): OwnSubnets {
  const waiting = (why: string): OwnSubnets => ({ ok: false, waiting: true, why });
  const final = (why: string): OwnSubnets => ({ ok: false, waiting: false, why });
  const assign =
    `(it does only when started with --allocate-node-cidrs=true --cluster-cidr=${clusterCidrFlag(nets)}; ` +
    `kubeadm: init --pod-network-cidr${nets.network6 ? `=${clusterCidrFlag(nets)}` : ""})`;
  const pc = selectPodCidrs(spec);
  if (!pc.ok) {
    if (pc.missing)
      return waiting(
        `Node ${node} has no podCIDR yet; waiting for kube-controller-manager to assign one ${assign}`,
      );
    return final(`Node ${node}: ${pc.why}`);
  }
  const { v4, v6 } = pc.cidrs;
  if (!v4)
    return final(
      `Node ${node} has no IPv4 podCIDR (only ${formatCidr6(v6!)}): Tartan needs one (IPv6-only clusters are not supported; dual stack is, with EnableIPv6); give the cluster an IPv4 --cluster-cidr too`,
    );
  const outside = outsideNetwork(nets.network, v4);
  if (outside)
    return final(
      `Node ${node}'s ${outside} (Network of ${configPath}): set Network to the cluster CIDR, kube-controller-manager's --cluster-cidr`,
    );
  if (!nets.network6) return { ok: true, v4, v6: null };
  if (!v6)
    return waiting(
      `Node ${node} has podCIDR ${formatCidr(v4)} but no IPv6 podCIDR yet, and ${configPath} enables IPv6; waiting for kube-controller-manager to assign one ${assign}`,
    );
  const outside6 = outsideNetwork6(nets.network6, v6);
  if (outside6)
    return final(
      `Node ${node}'s ${outside6} (IPv6Network of ${configPath}): set IPv6Network to the IPv6 cluster CIDR, the second of kube-controller-manager's --cluster-cidr`,
    );
  return { ok: true, v4, v6 };
}
