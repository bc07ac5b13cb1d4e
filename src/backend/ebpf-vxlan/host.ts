/**
 * What the programs need from the node beside their maps: the config map they read
 * (underlay, addresses, VNI, port, MTU, VTEP MAC, TTL, SubnetLen; its READY flag turns
 * the fast path on), loose reverse-path filtering on the underlay and IPv4 forwarding.
 */
import { CFG_READY, type Config } from "../../bpf/abi.ts";
import type { BpfMap } from "../../bpf/map.ts";
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
}

/** Fills the config map; the outer TTL is the node's default TTL, as the kernel vxlan driver uses. */
export function writeConfig(config: BpfMap<number, Config>, s: DatapathSettings): void {
  let ttl = 64;
  try {
    ttl = Number(readSysctl("net.ipv4.ip_default_ttl")) || 64;
  } catch {}
  config.update(0, {
    flags: CFG_READY,
    localIp: s.ext.ifaceIp,
    underlayIfindex: s.ext.index,
    vni: s.vni,
    port: s.port,
    overlayMtu: s.mtu,
    underlayMac: s.ext.mac,
    vtepMac: s.vtepMac,
    ttl,
    subnetLen: s.subnetLen,
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
