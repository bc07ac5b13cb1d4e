/**
 * IPv6 addresses and prefixes as 128-bit bigints: parsing (what Go's net.ParseIP accepts),
 * formatting exactly as Go's net.IP.String() prints them — flannel's registry keys, lease
 * JSON and subnet.env carry that text, so Tartan must produce the same bytes — masking,
 * containment and stepping through subnets. Pure; no I/O.
 *
 * bigint rather than 8×u16: the lease code compares, masks and adds whole addresses (a
 * /64 step is `1n << 64n`), which bigint does in one operation and without a carry loop;
 * a dual-stack lease is parsed once per registry change, so the cost never shows.
 */

/** An IPv6 address as an unsigned 128-bit integer. */
export type Ip6 = bigint;

/** An IPv6 prefix: network address (host bits zero) and prefix length 0..128. */
export interface Cidr6 {
  readonly ip: Ip6;
  readonly len: number;
}

const ALL_ONES = (1n << 128n) - 1n;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;
const V4_TAIL = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Groups of one side of "::" (dotted IPv4 allowed last): 16-bit values, or null when malformed. */
function groupsOf(part: string, allowV4Tail: boolean): number[] | null {
  if (part === "") return [];
  const out: number[] = [];
  const items = part.split(":");
  for (let i = 0; i < items.length; i++) {
    const g = items[i]!;
    if (HEX_GROUP.test(g)) {
      out.push(Number.parseInt(g, 16));
      continue;
    }
    const m = i === items.length - 1 && allowV4Tail ? V4_TAIL.exec(g) : null;
    if (!m) return null;
    const b = m.slice(1).map(Number);
    // Go refuses leading zeros in the dotted part too ("::ffff:01.2.3.4")
    if (b.some((x) => x > 255) || m.slice(1).some((t) => t.length > 1 && t.startsWith("0"))) return null;
    out.push((b[0]! << 8) | b[1]!, (b[2]! << 8) | b[3]!);
  }
  return out;
}

/**
 * Parses IPv6 text as Go's net.ParseIP does for IPv6: hex groups, one "::", an IPv4 tail
 * ("::ffff:198.18.0.1"); no zone, no brackets. Null when it is not an IPv6 address
 * (plain IPv4 "198.18.0.1" included: that is the other family).
 */
export function parseIp6(text: string): Ip6 | null {
  if (!text.includes(":") || text.length > 45) return null;
  const halves = text.split("::");
  if (halves.length > 2) return null;
  let groups: number[];
  if (halves.length === 2) {
    const head = groupsOf(halves[0]!, false);
    const tail = groupsOf(halves[1]!, true);
    // "::" stands for at least one group of zeros
    if (!head || !tail || head.length + tail.length > 7) return null;
    groups = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  } else {
    const all = groupsOf(text, true);
    if (all?.length !== 8) return null;
    groups = all;
  }
  let ip = 0n;
  for (const g of groups) ip = (ip << 16n) | BigInt(g);
  return ip;
}

/**
 * Go's net.IP.String() for a 16-byte address: an IPv4-mapped address as dotted IPv4, else
 * RFC 5952 — lower-case hex without leading zeros, the longest run of two or more zero
 * groups (the first of equal runs) written "::".
 */
export function formatIp6(ip: Ip6): string {
  if (isV4Mapped(ip)) {
    const v4 = Number(ip & 0xffffffffn);
    return `${v4 >>> 24}.${(v4 >>> 16) & 255}.${(v4 >>> 8) & 255}.${v4 & 255}`;
  }
  const g: number[] = [];
  for (let i = 7; i >= 0; i--) g.push(Number((ip >> BigInt(i * 16)) & 0xffffn));
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number) =>
    g
      .slice(from, to)
      .map((x) => x.toString(16))
      .join(":");
  if (bestAt < 0) return hex(0, 8);
  return `${hex(0, bestAt)}::${hex(bestAt + bestLen, 8)}`;
}

/** True for the IPv4-mapped range ::ffff:0:0/96, which Go prints as IPv4. */
export function isV4Mapped(ip: Ip6): boolean {
  return ip >> 32n === 0xffffn;
}

/** The netmask of a prefix length as a 128-bit value. */
export function maskOf6(len: number): bigint {
  return len === 0 ? 0n : (ALL_ONES << BigInt(128 - len)) & ALL_ONES;
}

/**
 * Parses "addr/len" (IPv6 only). With `strict` (the default) host bits must be zero, as
 * flannel requires of lease subnets; without it they are masked, as Go's net.ParseCIDR does.
 */
export function parseCidr6(text: string, strict = true): Cidr6 | null {
  const slash = text.indexOf("/");
  if (slash < 0) return null;
  const ip = parseIp6(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  if (ip === null || !/^\d{1,3}$/.test(lenText)) return null;
  const len = Number(lenText);
  if (len > 128) return null;
  const net = ip & maskOf6(len);
  if (strict && net !== ip) return null;
  return { ip: net, len };
}

export function formatCidr6(c: Cidr6): string {
  return `${formatIp6(c.ip)}/${c.len}`;
}

/** flannel's registry key form of a v6 subnet (the part after "&"): "fc00:0:0:5::-64". */
export function cidr6ToKey(c: Cidr6): string {
  return `${formatIp6(c.ip)}-${c.len}`;
}

/**
 * Parses the key form "fc00:0:0:5::-64". Only the form flannel writes is accepted (Go's
 * text, host bits zero): a lease's key is its identity, and a second spelling of the same
 * subnet would make a delete of one miss the other.
 */
export function keyToCidr6(key: string): Cidr6 | null {
  const dash = key.lastIndexOf("-");
  if (dash < 0) return null;
  const c = parseCidr6(`${key.slice(0, dash)}/${key.slice(dash + 1)}`);
  return c && cidr6ToKey(c) === key ? c : null;
}

/** Number of addresses in the prefix. */
export function cidr6Size(c: Cidr6): bigint {
  return 1n << BigInt(128 - c.len);
}

/** Last address of the prefix. */
export function cidr6Last(c: Cidr6): Ip6 {
  return c.ip + cidr6Size(c) - 1n;
}

export function containsIp6(c: Cidr6, ip: Ip6): boolean {
  return (ip & maskOf6(c.len)) === c.ip;
}

/** True when `inner` lies wholly inside `outer`. */
export function containsCidr6(outer: Cidr6, inner: Cidr6): boolean {
  return inner.len >= outer.len && containsIp6(outer, inner.ip);
}

export function overlaps6(a: Cidr6, b: Cidr6): boolean {
  return containsIp6(a, b.ip) || containsIp6(b, a.ip);
}

export function cidr6Equals(a: Cidr6, b: Cidr6): boolean {
  return a.ip === b.ip && a.len === b.len;
}

/** The subnet's network address + 1, as flannel writes FLANNEL_IPV6_SUBNET and the gateway. */
export function firstHost6(c: Cidr6): Ip6 {
  return c.ip + 1n;
}

/** The address at offset `n` inside a prefix (1 = the gateway). */
export function nthAddress6(c: Cidr6, n: number | bigint): Ip6 {
  return c.ip + BigInt(n);
}
