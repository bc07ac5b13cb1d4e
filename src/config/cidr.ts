/**
 * IPv4 addresses and CIDR prefixes as plain numbers: parsing, formatting, alignment,
 * containment and enumeration of subnets. Pure; no I/O.
 */

/** An IPv4 address as an unsigned 32-bit integer. */
export type Ip4 = number;

/** An IPv4 prefix: network address (host bits zero) and prefix length. */
export interface Cidr {
  readonly ip: Ip4;
  readonly len: number;
}

const IP4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Parses dotted-quad IPv4; returns null when it is not one (no leading zeros, each octet ≤ 255). */
export function parseIp4(text: string): Ip4 | null {
  const m = IP4_RE.exec(text);
  if (!m) return null;
  let ip = 0;
  for (let i = 1; i <= 4; i++) {
    const part = m[i]!;
    if (part.length > 1 && part.startsWith("0")) return null;
    const n = Number(part);
    if (n > 255) return null;
    ip = ip * 256 + n;
  }
  return ip >>> 0;
}

export function formatIp4(ip: Ip4): string {
  return `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;
}

/** The netmask of a prefix length as a u32. */
export function maskOf(len: number): number {
  return len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
}

/**
 * Parses "a.b.c.d/len". With `strict` (the default) host bits must be zero, as
 * flannel requires for Network and lease subnets.
 */
export function parseCidr(text: string, strict = true): Cidr | null {
  const slash = text.indexOf("/");
  if (slash < 0) return null;
  const ip = parseIp4(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  if (ip === null || !/^\d{1,2}$/.test(lenText)) return null;
  const len = Number(lenText);
  if (len > 32) return null;
  const net = (ip & maskOf(len)) >>> 0;
  if (strict && net !== ip) return null;
  return { ip: net, len };
}

export function formatCidr(c: Cidr): string {
  return `${formatIp4(c.ip)}/${c.len}`;
}

/** flannel's registry key form of a subnet: "10.244.3.0-24". */
export function cidrToKey(c: Cidr): string {
  return `${formatIp4(c.ip)}-${c.len}`;
}

/** Parses flannel's registry key form "10.244.3.0-24"; null when malformed or not aligned. */
export function keyToCidr(key: string): Cidr | null {
  const dash = key.lastIndexOf("-");
  if (dash < 0) return null;
  return parseCidr(`${key.slice(0, dash)}/${key.slice(dash + 1)}`);
}

export function cidrSize(c: Cidr): number {
  return 2 ** (32 - c.len);
}

/** Last address of the prefix. */
export function cidrLast(c: Cidr): Ip4 {
  return (c.ip + cidrSize(c) - 1) >>> 0;
}

export function containsIp(c: Cidr, ip: Ip4): boolean {
  return (ip & maskOf(c.len)) >>> 0 === c.ip;
}

/** True when `inner` lies wholly inside `outer`. */
export function containsCidr(outer: Cidr, inner: Cidr): boolean {
  return inner.len >= outer.len && containsIp(outer, inner.ip);
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  return containsIp(a, b.ip) || containsIp(b, a.ip);
}

export function cidrEquals(a: Cidr, b: Cidr): boolean {
  return a.ip === b.ip && a.len === b.len;
}

/** The first usable address of a subnet (network + 1), as flannel writes FLANNEL_SUBNET. */
export function firstHost(c: Cidr): Ip4 {
  return c.len >= 31 ? c.ip : (c.ip + 1) >>> 0;
}

/** The address a host has inside a pod network for a given offset (1 = gateway). */
export function nthAddress(c: Cidr, n: number): Ip4 {
  return (c.ip + n) >>> 0;
}
