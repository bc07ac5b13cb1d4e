/**
 * The cluster network config: flannel's JSON (`Network`, `SubnetLen`, `SubnetMin`,
 * `SubnetMax`, `Backend{Type, VNI, Port, DirectRouting, MTU}`; for dual stack `EnableIPv6`,
 * `IPv6Network`, `IPv6SubnetLen`, `IPv6SubnetMin`, `IPv6SubnetMax`), its defaults and its
 * checks, exactly as flanneld applies them (pkg/subnet/config.go); keys in any letter case,
 * as flannel (Go's encoding/json) reads them (net-conf-keys.ts). Errors say
 * `Field=value: what is allowed`. Pure.
 */
import * as v from "valibot";
import { ValidationError } from "../validation.ts";
import {
  type Cidr,
  cidrLast,
  cidrSize,
  containsIp,
  formatCidr,
  formatIp4,
  maskOf,
  parseCidr,
  parseIp4,
} from "./cidr.ts";
import {
  type Cidr6,
  cidr6Last,
  containsIp6,
  formatCidr6,
  formatIp6,
  type Ip6,
  isV4Mapped,
  maskOf6,
  parseCidr6,
  parseIp6,
} from "./cidr6.ts";
import { canonicalKeys } from "./net-conf-keys.ts";

/** Backends an agent can run. `ebpf-vxlan` is Tartan's; it speaks the vxlan wire format. */
export const BACKENDS = ["ebpf-vxlan", "vxlan", "host-gw", "alloc"] as const;
export type BackendName = (typeof BACKENDS)[number];

/** The kernel's and flannel's VXLAN port. */
export const DEFAULT_VXLAN_PORT = 8472;
export const DEFAULT_VNI = 1;

export interface BackendConfig {
  readonly type: BackendName;
  readonly vni: number;
  readonly port: number;
  readonly directRouting: boolean;
  /** Overlay MTU override; null = derive from the underlay (underlay MTU − 50 for vxlan). */
  readonly mtu: number | null;
}

/** The IPv6 half of a dual-stack network (EnableIPv6), defaulted and checked as flannel does. */
export interface Ipv6NetworkConfig {
  readonly network: Cidr6;
  readonly subnetLen: number;
  readonly subnetMin: Ip6;
  readonly subnetMax: Ip6;
}

export interface NetworkConfig {
  readonly network: Cidr;
  readonly subnetLen: number;
  readonly subnetMin: number;
  readonly subnetMax: number;
  readonly backend: BackendConfig;
  /** Dual stack: the IPv6 network (EnableIPv6: true); absent or null for IPv4 only. */
  readonly ipv6?: Ipv6NetworkConfig | null;
  /** The JSON as stored, for `config get` and subnet.env round trips. */
  readonly raw: string;
  /** What a person should know but that is no error: unknown keys, host bits in Network. */
  readonly warnings: readonly string[];
  /**
   * Subnets are given, not allocated (--kube-subnet-mgr: each Node's podCIDR): a subnet of
   * any prefix length inside Network is a lease, as flannel's kube subnet manager takes
   * them, and subnetLen is our own podCIDR's (kube-controller-manager's
   * --node-cidr-mask-size, the same for every Node).
   */
  readonly podCidrSubnets?: boolean;
}

const ipString = v.pipe(
  v.string("must be a string: an IPv4 address like 10.244.0.0"),
  v.check((s) => parseIp4(s) !== null, "must be an IPv4 address like 10.244.0.0"),
);

const BackendSchema = v.looseObject({
  Type: v.optional(
    v.picklist(
      BACKENDS,
      `must be one of ${BACKENDS.join(", ")} (flannel's udp and others are not supported)`,
    ),
  ),
  VNI: v.optional(
    v.pipe(
      v.number("must be a number 0..16777215"),
      v.integer("must be a whole number 0..16777215"),
      v.minValue(0, "must be 0..16777215"),
      v.maxValue(0xffffff, "must be 0..16777215"),
    ),
  ),
  Port: v.optional(
    v.pipe(
      v.number("must be a number 0..65535"),
      v.integer("must be a whole number 0..65535"),
      v.minValue(0, "must be 0..65535"),
      v.maxValue(65535, "must be 0..65535"),
    ),
  ),
  DirectRouting: v.optional(v.boolean("must be true or false")),
  MTU: v.optional(
    v.pipe(
      v.number("must be a number 576..65535"),
      v.integer("must be a whole number 576..65535"),
      v.minValue(576, "must be at least 576"),
      v.maxValue(65535, "must be at most 65535"),
    ),
  ),
});

const NetworkSchema = v.looseObject({
  Network: v.optional(
    v.pipe(
      v.string("must be a string: a CIDR like 10.244.0.0/16"),
      v.check((s) => parseCidr(s, false) !== null, "must be an IPv4 CIDR like 10.244.0.0/16"),
    ),
  ),
  SubnetLen: v.optional(
    v.pipe(
      v.number("must be a number: a prefix length like 24"),
      v.integer("must be a whole number: a prefix length like 24"),
      v.minValue(0, "must be a prefix length like 24 (0: flannel's default)"),
    ),
  ),
  SubnetMin: v.optional(ipString),
  SubnetMax: v.optional(ipString),
  EnableIPv6: v.optional(v.boolean("must be true or false")),
  EnableIPv4: v.optional(v.boolean("must be true or false")),
  Backend: v.optional(v.looseObject({}, 'must be an object like {"Type": "vxlan"}')),
});

const ip6String = v.pipe(
  v.string("must be a string: an IPv6 address like fd00:19:0:100::"),
  v.check((s) => parseIp6(s) !== null, "must be an IPv6 address like fd00:19:0:100::"),
);

/** The IPv6 keys, checked only when EnableIPv6 is true (flannel reads them only then). */
const Ipv6Schema = v.looseObject({
  IPv6Network: v.optional(
    v.pipe(
      v.string("must be a string: an IPv6 CIDR like fd00:19::/56"),
      v.check((s) => parseCidr6(s, false) !== null, "must be an IPv6 CIDR like fd00:19::/56"),
      v.check((s) => {
        const c = parseCidr6(s, false);
        return c === null || !isV4Mapped(c.ip);
      }, "must be an IPv6 network, not IPv4-mapped"),
    ),
  ),
  IPv6SubnetLen: v.optional(
    v.pipe(
      v.number("must be a number: a prefix length like 64"),
      v.integer("must be a whole number: a prefix length like 64"),
      v.minValue(0, "must be a prefix length like 64 (0: flannel's default)"),
    ),
  ),
  IPv6SubnetMin: v.optional(ip6String),
  IPv6SubnetMax: v.optional(ip6String),
});

/** `Field=value: what is allowed`, the value as the file has it. */
function issueText(issue: v.BaseIssue<unknown>): string {
  const path = v.getDotPath(issue) ?? "";
  // a wrong type shows as JSON ("24" is a string); a wrong value as written
  const val =
    typeof issue.input === "string" && issue.kind !== "schema" ? issue.input : JSON.stringify(issue.input);
  return `${path}=${val}: ${issue.message}`;
}

function fail(what: string): never {
  throw new ValidationError(`network config: ${what}`);
}

/** The subnet length flannel derives, or the one given, checked as flannel checks it. */
function subnetLenOf(network: Cidr, given: number | undefined): number {
  if (given !== undefined && given > 0) {
    if (given > 30) fail(`SubnetLen=${given}: must be at most 30`);
    if (given < network.len + 2)
      fail(
        `SubnetLen=${given}: leaves room for fewer than four subnets in Network ${formatCidr(network)}; use ${network.len + 2} or more`,
      );
    return given;
  }
  if (network.len > 28)
    fail(`Network=${formatCidr(network)}: too small; the smallest useful network is a /28`);
  return network.len <= 22 ? 24 : network.len + 2;
}

/** The IPv6 subnet length flannel derives (64 up to a /62, else prefix + 2), or the one given, checked. */
function ipv6SubnetLenOf(network: Cidr6, given: number | undefined): number {
  if (given !== undefined && given > 0) {
    if (given > 126) fail(`IPv6SubnetLen=${given}: must be at most 126`);
    if (given < network.len + 2)
      fail(
        `IPv6SubnetLen=${given}: leaves room for fewer than four subnets in IPv6Network ${formatCidr6(network)}; use ${network.len + 2} or more`,
      );
    return given;
  }
  if (network.len > 124)
    fail(`IPv6Network=${formatCidr6(network)}: too small; the smallest useful IPv6 network is a /124`);
  return network.len <= 62 ? 64 : network.len + 2;
}

/** The IPv6 half, as flannel's CheckNetworkConfig does it when EnableIPv6 is true. */
function ipv6ConfigOf(doc: Record<string, unknown>, warnings: string[]): Ipv6NetworkConfig {
  const r = v.safeParse(Ipv6Schema, doc);
  if (!r.success) fail(issueText(r.issues[0]));
  const c = r.output;
  if (c.IPv6Network === undefined || c.IPv6Network === "")
    fail("IPv6Network is required when EnableIPv6 is true: a CIDR like fd00:19::/56");
  const network = parseCidr6(c.IPv6Network, false)!;
  if (parseCidr6(c.IPv6Network, true) === null)
    warnings.push(
      `IPv6Network=${c.IPv6Network} has host bits set; it means ${formatCidr6(network)}, as in flannel`,
    );
  const subnetLen = ipv6SubnetLenOf(network, c.IPv6SubnetLen);
  const size = 1n << BigInt(128 - subnetLen);
  const checkInNet = (field: string, text: string) => {
    const ip = parseIp6(text)!;
    if (!containsIp6(network, ip)) fail(`${field}=${text}: not inside IPv6Network ${formatCidr6(network)}`);
    if ((ip & maskOf6(subnetLen)) !== ip)
      fail(`${field}=${text}: not on a /${subnetLen} boundary (IPv6SubnetLen ${subnetLen})`);
    return ip;
  };
  // the first subnet is skipped, as for IPv4 (flannel: "conflicts with the broadcast address")
  const subnetMin = c.IPv6SubnetMin ? checkInNet("IPv6SubnetMin", c.IPv6SubnetMin) : network.ip + size;
  const subnetMax = c.IPv6SubnetMax
    ? checkInNet("IPv6SubnetMax", c.IPv6SubnetMax)
    : cidr6Last(network) + 1n - size;
  if (subnetMin > subnetMax)
    fail(`IPv6SubnetMin=${formatIp6(subnetMin)}: above IPv6SubnetMax ${formatIp6(subnetMax)}`);
  return { network, subnetLen, subnetMin, subnetMax };
}

/** Parses and defaults a network config exactly as flanneld does; throws ValidationError naming the field. */
export function parseNetworkConfig(json: string): NetworkConfig {
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch (e) {
    throw new ValidationError(`network config is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc))
    throw new ValidationError('network config must be a JSON object like {"Network": "10.244.0.0/16"}');
  const { doc: canonical, warnings } = canonicalKeys(doc as Record<string, unknown>);
  const r = v.safeParse(NetworkSchema, canonical);
  if (!r.success) fail(issueText(r.issues[0]));
  const c = r.output;
  const br = c.Backend === undefined ? undefined : v.safeParse(BackendSchema, c.Backend);
  if (br && !br.success) fail(`Backend.${issueText(br.issues[0])}`);
  // flannel's etcd subnet manager always leases an IPv4 subnet; IPv6-only needs its kube one
  if (c.EnableIPv4 === false)
    fail(
      "EnableIPv4=false: IPv6-only networks are not supported (flannel runs them only with the Kubernetes subnet manager); set it to true, with a Network, and add EnableIPv6 for dual stack",
    );
  if (c.Network === undefined) fail("Network is required: a CIDR like 10.244.0.0/16");
  // flannel masks the network address to its prefix (Go's net.ParseCIDR does); say so
  const network = parseCidr(c.Network, false)!;
  if (parseCidr(c.Network, true) === null)
    warnings.push(`Network=${c.Network} has host bits set; it means ${formatCidr(network)}, as in flannel`);
  const subnetLen = subnetLenOf(network, c.SubnetLen);
  const subnetSize = 2 ** (32 - subnetLen);
  const checkInNet = (field: string, text: string) => {
    const ip = parseIp4(text)!;
    if (!containsIp(network, ip)) fail(`${field}=${text}: not inside Network ${formatCidr(network)}`);
    if ((ip & maskOf(subnetLen)) >>> 0 !== ip)
      fail(`${field}=${text}: not on a /${subnetLen} boundary (SubnetLen ${subnetLen})`);
    return ip;
  };
  // flannel skips the first subnet by default: its .0 address would clash with the network's
  const subnetMin = c.SubnetMin ? checkInNet("SubnetMin", c.SubnetMin) : network.ip + subnetSize;
  const subnetMax = c.SubnetMax ? checkInNet("SubnetMax", c.SubnetMax) : cidrLast(network) + 1 - subnetSize;
  if (subnetMin > subnetMax)
    fail(`SubnetMin=${formatIp4(subnetMin)}: above SubnetMax ${formatIp4(subnetMax)}`);
  const b = br?.output ?? {};
  const ipv6 = c.EnableIPv6 === true ? ipv6ConfigOf(canonical, warnings) : null;
  return {
    network,
    subnetLen,
    subnetMin,
    subnetMax,
    backend: {
      type: b.Type ?? "vxlan",
      vni: b.VNI ?? DEFAULT_VNI,
      port: b.Port || DEFAULT_VXLAN_PORT,
      directRouting: b.DirectRouting ?? false,
      mtu: b.MTU ?? null,
    },
    ipv6,
    raw: json,
    warnings,
  };
}

/** How many subnets the config can hand out. */
export function subnetCapacity(cfg: NetworkConfig): number {
  return (cfg.subnetMax - cfg.subnetMin) / 2 ** (32 - cfg.subnetLen) + 1;
}

/** The i-th subnet of the lease range. */
export function subnetAt(cfg: NetworkConfig, i: number): Cidr {
  return { ip: (cfg.subnetMin + i * 2 ** (32 - cfg.subnetLen)) >>> 0, len: cfg.subnetLen };
}

/** True when `sn` is a subnet this config could have handed out: right length, inside the network. */
export function isValidSubnet(cfg: NetworkConfig, sn: Cidr): boolean {
  return sn.len === cfg.subnetLen && containsIp(cfg.network, sn.ip) && cidrSize(sn) <= cidrSize(cfg.network);
}

/** How many IPv6 subnets the config can hand out (a bigint: a /48 of /64s is 65,536, a /32 four billion). */
export function subnetCapacity6(c6: Ipv6NetworkConfig): bigint {
  return (c6.subnetMax - c6.subnetMin) / (1n << BigInt(128 - c6.subnetLen)) + 1n;
}

/** The i-th IPv6 subnet of the lease range. */
export function subnetAt6(c6: Ipv6NetworkConfig, i: bigint): Cidr6 {
  return { ip: c6.subnetMin + i * (1n << BigInt(128 - c6.subnetLen)), len: c6.subnetLen };
}

/** True when `sn` is an IPv6 subnet this config could have handed out: right length, inside the network. */
export function isValidSubnet6(c6: Ipv6NetworkConfig, sn: Cidr6): boolean {
  return sn.len === c6.subnetLen && containsIp6(c6.network, sn.ip);
}
