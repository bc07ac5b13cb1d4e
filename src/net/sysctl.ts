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
