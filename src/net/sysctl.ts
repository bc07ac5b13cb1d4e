/**
 * sysctl values under /proc/sys, by their dotted names ("net.ipv4.conf.eth0.rp_filter"),
 * in the caller's network namespace. Interface names may contain dots, so callers name
 * the interface part separately with `confKey`.
 */
import { readFileSync, writeFileSync } from "node:fs";

function path(key: string): string {
  return `/proc/sys/${key}`;
}

/** "net.ipv4.conf.<iface>.<name>", keeping dots inside the interface name. */
export function confKey(iface: string, name: string, family: "ipv4" | "ipv6" = "ipv4"): string {
  return `net/${family}/conf/${iface}/${name}`;
}

function toPath(key: string): string {
  return key.includes("/") ? path(key) : path(key.replaceAll(".", "/"));
}

export function readSysctl(key: string): string {
  return readFileSync(toPath(key), "utf8").trim();
}

export function writeSysctl(key: string, value: string | number): void {
  writeFileSync(toPath(key), `${value}\n`);
}

/** Sets `key` to `value` when different; returns the previous value (null when unchanged). */
export function ensureSysctl(key: string, value: string | number): string | null {
  const cur = readSysctl(key);
  if (cur === String(value)) return null;
  writeSysctl(key, value);
  return cur;
}

/** Pods are routed through the node: IPv4 forwarding must be on (flanneld leaves this to the operator). */
export function enableForwarding(log: { info(msg: string, fields?: Record<string, unknown>): void }): void {
  const was = ensureSysctl("net.ipv4.ip_forward", 1);
  if (was !== null) log.info("enabled IPv4 forwarding (pods are routed through this node)", { from: was });
}

/**
 * A dual-stack node routes IPv6 pods too: IPv6 forwarding must be on (`all` is the switch
 * the kernel reads). A forwarding host ignores router advertisements where accept_ra is 1,
 * so an underlay configured by SLAAC would lose its address and default route: there the
 * underlay's accept_ra becomes 2 (accept them while forwarding) first.
 */
export function enableForwarding6(
  log: { info(msg: string, fields?: Record<string, unknown>): void },
  underlay: string,
): void {
  const ra = confKey(underlay, "accept_ra", "ipv6");
  if (readSysctl("net.ipv6.conf.all.forwarding") !== "1" && readSysctl(ra) === "1") {
    writeSysctl(ra, 2);
    log.info("the underlay keeps accepting router advertisements while IPv6 forwarding is on", {
      iface: underlay,
      accept_ra: 2,
    });
  }
  const was = ensureSysctl("net.ipv6.conf.all.forwarding", 1);
  if (was !== null) log.info("enabled IPv6 forwarding (pods are routed through this node)", { from: was });
}
