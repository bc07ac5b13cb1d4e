/**
 * The delegated network config, built as flannel's CNI plugin builds it: `bridge` unless
 * `delegate.type` says otherwise, `ipMasq` = !FLANNEL_IPMASQ, `mtu` = FLANNEL_MTU,
 * `isGateway` for bridge, and `host-local` IPAM over FLANNEL_SUBNET with a route to
 * FLANNEL_NETWORK (after any `ipam.routes` of the config); a dual-stack subnet.env adds a
 * second range (FLANNEL_IPV6_SUBNET) and a route to FLANNEL_IPV6_NETWORK, as flannel's
 * plugin does. Keys the user set in `delegate` win. Pure.
 */
import { type Cidr, firstHost, formatCidr, formatIp4 } from "../config/cidr.ts";
import { formatCidr6 } from "../config/cidr6.ts";
import type { SubnetEnv } from "../config/subnet-env.ts";
import { DEFAULT_BRIDGE, type NetConf } from "./conf.ts";

export type DelegateConf = Record<string, unknown> & {
  readonly type: string;
  readonly name: string;
  readonly cniVersion: string;
};

export function buildDelegateConf(conf: NetConf, env: SubnetEnv): DelegateConf {
  const d: Record<string, unknown> = { ...(conf.delegate ?? {}) };
  if (conf.runtimeConfig) d.runtimeConfig = conf.runtimeConfig;
  d.name = conf.name;
  if (!("type" in d)) d.type = "bridge";
  if (!("ipMasq" in d)) d.ipMasq = !env.ipMasq;
  if (!("mtu" in d)) d.mtu = env.mtu;
  if (d.type === "bridge" && !("isGateway" in d)) d.isGateway = true;
  d.cniVersion = conf.cniVersion;
  const ipam: Record<string, unknown> = { ...(conf.ipam ?? {}) };
  if (!("type" in ipam)) ipam.type = "host-local";
  const v6 = env.network6 && env.subnet6 ? { network: env.network6, subnet: env.subnet6 } : null;
  // host-local takes the subnet's prefix (flannel's plugin parses it with net.ParseCIDR)
  ipam.ranges = [[{ subnet: formatCidr(env.subnet) }], ...(v6 ? [[{ subnet: formatCidr6(v6.subnet) }]] : [])];
  ipam.routes = [
    ...(conf.ipam?.routes ?? []),
    { dst: formatCidr(env.network) },
    ...(v6 ? [{ dst: formatCidr6(v6.network) }] : []),
  ];
  d.ipam = ipam;
  return d as DelegateConf;
}

/** The bridge a delegate config attaches pods to, or null when the delegate is not `bridge`. */
export function bridgeOf(d: Record<string, unknown>): string | null {
  if (d.type !== "bridge") return null;
  return typeof d.bridge === "string" && d.bridge !== "" ? d.bridge : DEFAULT_BRIDGE;
}

/** True when the bridge plugin will put the gateway address on the bridge. */
export function bridgeIsGateway(d: Record<string, unknown>): boolean {
  return d.isGateway === true || d.isDefaultGateway === true;
}

/** The address host-local's default gateway gives the bridge: the subnet's first host, with its length. */
export function gatewayOf(subnet: Cidr): { ip: string; len: number } {
  return { ip: formatIp4(firstHost(subnet)), len: subnet.len };
}

export interface BridgeAddr {
  readonly ip: string;
  readonly len: number;
}

/**
 * IPv4 addresses on the bridge that the bridge plugin would refuse ("cni0 already has an
 * IP address different from …"): every one that is not exactly the gateway/len.
 */
export function staleBridgeAddrs(have: readonly BridgeAddr[], gateway: BridgeAddr): BridgeAddr[] {
  return have.filter((a) => !(a.ip === gateway.ip && a.len === gateway.len));
}
