/**
 * The cluster network config: flannel's JSON (`Network`, `SubnetLen`, `SubnetMin`,
 * `SubnetMax`, `Backend{Type, VNI, Port, DirectRouting, MTU}`), its defaults and its checks,
 * exactly as flanneld applies them. Pure.
 */
import * as v from "valibot";
import { issuesText, ValidationError } from "../validation.ts";
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
}

const ipString = (field: string) =>
  v.pipe(
    v.string(`${field} must be a string`),
    v.check((s) => parseIp4(s) !== null, `${field} must be an IPv4 address like 10.244.0.0`),
  );

const BackendSchema = v.looseObject({
  Type: v.optional(
    v.picklist(
      BACKENDS,
      `Backend.Type must be one of ${BACKENDS.join(", ")} (flannel's udp and others are not supported)`,
    ),
  ),
  VNI: v.optional(
    v.pipe(
      v.number("Backend.VNI must be a number"),
      v.integer(),
      v.minValue(0),
      v.maxValue(0xffffff, "Backend.VNI must be 0..16777215"),
    ),
  ),
  Port: v.optional(
    v.pipe(
      v.number("Backend.Port must be a number"),
      v.integer(),
      v.minValue(0),
      v.maxValue(65535, "Backend.Port must be 0..65535"),
    ),
  ),
  DirectRouting: v.optional(v.boolean("Backend.DirectRouting must be true or false")),
  MTU: v.optional(
    v.pipe(
      v.number("Backend.MTU must be a number"),
      v.integer(),
      v.minValue(576, "Backend.MTU must be at least 576"),
      v.maxValue(65535),
    ),
  ),
});

const NetworkSchema = v.looseObject({
  Network: v.optional(
    v.pipe(
      v.string("Network must be a string: a CIDR like 10.244.0.0/16"),
      v.check((s) => parseCidr(s, false) !== null, "Network must be an IPv4 CIDR like 10.244.0.0/16"),
    ),
  ),
  SubnetLen: v.optional(
    v.pipe(v.number("SubnetLen must be a number"), v.integer("SubnetLen must be an integer")),
  ),
  SubnetMin: v.optional(ipString("SubnetMin")),
  SubnetMax: v.optional(ipString("SubnetMax")),
  EnableIPv6: v.optional(v.literal(false, "EnableIPv6: IPv6 networks are not supported by Tartan yet")),
  EnableIPv4: v.optional(v.literal(true, "EnableIPv4: must be true (Tartan carries IPv4)")),
  Backend: v.optional(BackendSchema),
});

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
  const r = v.safeParse(NetworkSchema, doc);
  if (!r.success) throw new ValidationError(`network config: ${issuesText(r.issues)}`);
  const c = r.output;
  if (c.Network === undefined)
    throw new ValidationError("network config: Network is required: a CIDR like 10.244.0.0/16");
  // flannel masks the network address to its prefix
  const network = parseCidr(c.Network, false)!;
  let subnetLen: number;
  if (c.SubnetLen !== undefined && c.SubnetLen > 0) {
    if (c.SubnetLen > 30)
      throw new ValidationError(`network config: SubnetLen must be at most 30 (got ${c.SubnetLen})`);
    if (c.SubnetLen < network.len + 2)
      throw new ValidationError(
        `network config: SubnetLen ${c.SubnetLen} leaves room for fewer than four subnets in ${formatCidr(network)}; use ${network.len + 2} or more`,
      );
    subnetLen = c.SubnetLen;
  } else if (network.len > 28) {
    throw new ValidationError(
      `network config: Network ${formatCidr(network)} is too small; the smallest useful network is a /28`,
    );
  } else {
    subnetLen = network.len <= 22 ? 24 : network.len + 2;
  }
  const subnetSize = 2 ** (32 - subnetLen);
  const checkInNet = (field: string, text: string) => {
    const ip = parseIp4(text)!;
    if (!containsIp(network, ip))
      throw new ValidationError(
        `network config: ${field} ${text} is not inside Network ${formatCidr(network)}`,
      );
    if ((ip & maskOf(subnetLen)) >>> 0 !== ip)
      throw new ValidationError(
        `network config: ${field} ${text} is not on a /${subnetLen} boundary (SubnetLen)`,
      );
    return ip;
  };
  // flannel skips the first subnet by default: its .0 address would clash with the network's
  const subnetMin = c.SubnetMin ? checkInNet("SubnetMin", c.SubnetMin) : network.ip + subnetSize;
  const subnetMax = c.SubnetMax ? checkInNet("SubnetMax", c.SubnetMax) : cidrLast(network) + 1 - subnetSize;
  if (subnetMin > subnetMax)
    throw new ValidationError(
      `network config: SubnetMin ${formatIp4(subnetMin)} is above SubnetMax ${formatIp4(subnetMax)}`,
    );
  const b = c.Backend ?? {};
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
