/**
 * A Node's subnet: `spec.podCIDRs` (one per family, as kube-controller-manager assigns
 * them), else `spec.podCIDR`. Both families are parsed; Tartan carries the IPv4 one.
 * Pure.
 */
import { isIPv6 } from "node:net";
import { type Cidr, containsCidr, formatCidr, parseCidr } from "../config/cidr.ts";

export interface PodCidrs {
  readonly v4: Cidr | null;
  /** The IPv6 podCIDR as written ("fd00:19::/64"), parsed for its shape only. */
  readonly v6: string | null;
}

export type PodCidrResult =
  | { readonly ok: true; readonly cidrs: PodCidrs }
  /** `missing`: none assigned yet; `invalid`: assigned but not usable (`why` says how). */
  | { readonly ok: false; readonly missing: boolean; readonly why: string };

function parseV6Cidr(text: string): string | null {
  const slash = text.indexOf("/");
  if (slash < 0 || !isIPv6(text.slice(0, slash))) return null;
  const len = text.slice(slash + 1);
  return /^\d{1,3}$/.test(len) && Number(len) <= 128 ? text : null;
}

/** The pod CIDRs of a Node spec, per family (flannel's rules: at most two, one per family). */
export function selectPodCidrs(spec: { podCIDR?: unknown; podCIDRs?: unknown } | undefined): PodCidrResult {
  let list: unknown[] = [];
  if (Array.isArray(spec?.podCIDRs) && spec.podCIDRs.length > 0) list = spec.podCIDRs;
  else if (typeof spec?.podCIDR === "string" && spec.podCIDR !== "") list = [spec.podCIDR];
  if (list.length === 0) return { ok: false, missing: true, why: "no podCIDR assigned" };
  if (list.length > 2)
    return { ok: false, missing: false, why: `${list.length} podCIDRs: at most one per family (IPv4, IPv6)` };
  let v4: Cidr | null = null;
  let v6: string | null = null;
  for (const item of list) {
    const text = typeof item === "string" ? item : "";
    // flannel (Go's net.ParseCIDR) masks host bits away
    const c4 = parseCidr(text, false);
    const c6 = c4 ? null : parseV6Cidr(text);
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
