/**
 * The cluster network config: flannel's JSON (`Network`, `SubnetLen`, `SubnetMin`,
 * `SubnetMax`, `Backend{Type, VNI, Port, DirectRouting, MTU}`), its defaults and its checks,
 * exactly as flanneld applies them; keys in any letter case, as flannel (Go's encoding/json)
 * reads them (net-conf-keys.ts). Errors say `Field=value: what is allowed`. Pure.
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

export interface NetworkConfig {
  readonly network: Cidr;
  readonly subnetLen: number;
  readonly subnetMin: number;
  readonly subnetMax: number;
  readonly backend: BackendConfig;
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
  EnableIPv6: v.optional(v.literal(false, "must be false: Tartan carries IPv4 only")),
  EnableIPv4: v.optional(v.literal(true, "must be true: Tartan carries IPv4")),
  Backend: v.optional(v.looseObject({}, 'must be an object like {"Type": "vxlan"}')),
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
