/**
 * What the programs need from the node beside their maps: the config map they read
 * (underlay, addresses, VNI, port, MTU, VTEP MAC, TTL, SubnetLen; its READY flag turns
 * the fast path on), loose reverse-path filtering on the underlay and IPv4 forwarding.
 */
import { CFG_IPV6, CFG_READY, type Config } from "../../bpf/abi.ts";
import type { BpfMap } from "../../bpf/map.ts";
import type { Ip6 } from "../../config/cidr6.ts";
import type { Logger } from "../../log.ts";
import { confKey, ensureSysctl, readSysctl, writeSysctl } from "../../net/sysctl.ts";
import type { ExternalInterface } from "../backend.ts";

export interface DatapathSettings {
  readonly ext: ExternalInterface;
  readonly vni: number;
  readonly port: number;
  readonly mtu: number;
  readonly vtepMac: string;
  readonly subnetLen: number;
  /** Dual stack: the underlay's own IPv6 address (outer source, decap destination) and IPv6SubnetLen. */
  readonly v6?: {
    readonly localIp6: Ip6;
    readonly subnet6Len: number;
    readonly overlayIfindex: number;
  } | null;
}

/** A sysctl's number, or `fallback` when it cannot be read. */
function sysctlNumber(key: string, fallback: number): number {
  try {
    return Number(readSysctl(key)) || fallback;
  } catch {
    return fallback;
  }
}

/**
 * Fills the config map; the outer TTL is the node's default TTL, and the outer IPv6 hop
 * limit the underlay's hop_limit, as the kernel vxlan driver uses them.
 */
export function writeConfig(config: BpfMap<number, Config>, s: DatapathSettings): void {
  const ttl = sysctlNumber("net.ipv4.ip_default_ttl", 64);
  const v6 = s.v6 ?? null;
  config.update(0, {
    flags: CFG_READY | (v6 !== null ? CFG_IPV6 : 0),
    localIp: s.ext.ifaceIp,
    underlayIfindex: s.ext.index,
    vni: s.vni,
    port: s.port,
    overlayMtu: s.mtu,
    underlayMac: s.ext.mac,
    vtepMac: s.vtepMac,
    ttl,
    subnetLen: s.subnetLen,
    v6: v6 === null ? null : { ...v6, hopLimit: sysctlNumber(confKey(s.ext.name, "hop_limit", "ipv6"), 64) },
  });
}

/**
 * Strict rp_filter (1) drops decapsulated packets: their sources route via the overlay
 * device. The effective value is max(all, iface), so setting the interface to 2 suffices;
 * 0 (off) is left alone. Pods are routed through the node: forwarding on.
 */
export function hostSysctls(ext: ExternalInterface, log: Logger): void {
  const rp = confKey(ext.name, "rp_filter");
  if (readSysctl(rp) === "1") {
    writeSysctl(rp, 2);
    log.info(
      "set rp_filter loose (2) on the underlay: decapsulated packets come from remote pod subnets routed via the overlay device",
      { iface: ext.name, from: 1 },
    );
  }
  const fwd = ensureSysctl("net.ipv4.ip_forward", 1);
  if (fwd !== null) log.info("enabled IPv4 forwarding (pods are routed through this node)", { from: fwd });
}
