/**
 * Leases: the subnet a node holds and what it publishes (PublicIP, backend type and data),
 * and flannel's exact lease JSON. Records from the registry are validated here, once.
 * Dual stack adds the IPv6 subnet (in the key only), PublicIPv6 and BackendV6Data.
 */
import * as v from "valibot";
import {
  type Cidr,
  cidrToKey,
  containsCidr,
  formatIp4,
  type Ip4,
  overlaps,
  parseIp4,
} from "../config/cidr.ts";
import { type Cidr6, containsCidr6, formatIp6, type Ip6, overlaps6, parseIp6 } from "../config/cidr6.ts";
import { isValidSubnet6, type NetworkConfig } from "../config/network.ts";
import { parseSubnetKey, subnetKey } from "../config/subnet-key.ts";
import type { RegistryRecord } from "../registry/registry.ts";
import { issuesText } from "../validation.ts";

/** The wire backend a lease announces: what peers must speak to reach it. */
export type WireBackend = "vxlan" | "host-gw" | "alloc";

export interface VxlanBackendData {
  readonly VNI: number;
  readonly VtepMAC: string;
}

export interface LeaseAttrs {
  readonly publicIp: Ip4;
  readonly backendType: string;
  /** Parsed BackendData (vxlan: VNI + VtepMAC); null when absent. */
  readonly vxlan: VxlanBackendData | null;
  /** Dual stack: PublicIPv6, where the node's IPv6 underlay is reached; absent or null without. */
  readonly publicIpv6?: Ip6 | null;
  /** Dual stack, vxlan: BackendV6Data (VNI + VtepMAC of flannel-v6.<VNI>); absent or null without. */
  readonly vxlan6?: VxlanBackendData | null;
}

export interface Lease {
  readonly subnet: Cidr;
  /** flannel key, "10.244.3.0-24" (dual stack: "10.244.3.0-24&fd00:19:0:3::-64") */
  readonly key: string;
  /** Dual stack: the IPv6 subnet, from the key; absent or null in an IPv4-only lease. */
  readonly subnet6?: Cidr6 | null;
  readonly attrs: LeaseAttrs;
  /** ms since epoch; null = reservation (never expires) */
  readonly expiresAt: number | null;
  readonly revision: number;
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

const vxlanJson = (d: VxlanBackendData) => `{"VNI":${d.VNI},"VtepMAC":${JSON.stringify(d.VtepMAC)}}`;

/** Does this lease publish IPv6 (a dual-stack node's)? */
export function isDualAttrs(attrs: LeaseAttrs): boolean {
  return (attrs.publicIpv6 ?? null) !== null || (attrs.vxlan6 ?? null) !== null;
}

/**
 * Encodes lease attributes in flannel's exact JSON: the field order of flanneld's Go struct
 * (PublicIP, PublicIPv6, BackendType, BackendData, BackendV6Data) and its omissions. An
 * IPv4-only lease leaves PublicIPv6 out, as Tartan always has (flanneld since 0.15 writes
 * `"PublicIPv6":null` there; both decode to the same lease everywhere).
 */
export function encodeLeaseValue(attrs: LeaseAttrs): string {
  const publicIp = JSON.stringify(formatIp4(attrs.publicIp));
  let s = `{"PublicIP":${publicIp}`;
  const dual = isDualAttrs(attrs);
  if (dual)
    s += `,"PublicIPv6":${attrs.publicIpv6 == null ? "null" : JSON.stringify(formatIp6(attrs.publicIpv6))}`;
  if (attrs.backendType) s += `,"BackendType":${JSON.stringify(attrs.backendType)}`;
  if (attrs.vxlan) s += `,"BackendData":${vxlanJson(attrs.vxlan)}`;
  if (dual && attrs.vxlan6) s += `,"BackendV6Data":${vxlanJson(attrs.vxlan6)}`;
  return `${s}}`;
}

const LeaseValueSchema = v.looseObject({
  PublicIP: v.pipe(
    v.string("PublicIP must be a string"),
    v.check((s) => parseIp4(s) !== null, "PublicIP must be an IPv4 address"),
  ),
  PublicIPv6: v.optional(
    v.nullable(
      v.pipe(
        v.string("PublicIPv6 must be a string or null"),
        v.check((s) => parseIp6(s) !== null, "PublicIPv6 must be an IPv6 address"),
      ),
    ),
  ),
  BackendType: v.optional(v.string("BackendType must be a string"), ""),
  BackendData: v.optional(v.unknown()),
  BackendV6Data: v.optional(v.unknown()),
});

const VxlanDataSchema = v.looseObject(
  {
    VNI: v.pipe(
      v.number("BackendData.VNI must be a number"),
      v.integer(),
      v.minValue(0),
      v.maxValue(0xffffff),
    ),
    VtepMAC: v.pipe(
      v.string("BackendData.VtepMAC must be a string"),
      v.regex(MAC_RE, "BackendData.VtepMAC must be a MAC address"),
    ),
  },
  'BackendData must be {"VNI":…,"VtepMAC":…} when BackendType is vxlan',
);

export type DecodeResult = { ok: true; lease: Lease } | { ok: false; reason: string };

/**
 * Validates one registry record against the network config: the key must be a subnet
 * of the configured length inside the network (any length when subnets are Nodes'
 * podCIDRs); the value flannel's lease JSON, with vxlan BackendData when BackendType is vxlan.
 */
export function decodeLeaseRecord(rec: RegistryRecord, cfg: NetworkConfig): DecodeResult {
  const pair = parseSubnetKey(rec.key);
  if (!pair)
    return {
      ok: false,
      reason: `key ${JSON.stringify(rec.key)} is not a subnet like 10.244.3.0-24 or 10.244.3.0-24&fd00:19:0:3::-64`,
    };
  const subnet = pair.v4;
  if (!containsCidr(cfg.network, subnet))
    return { ok: false, reason: `subnet ${rec.key} is outside the network` };
  if (subnet.len !== cfg.subnetLen && !cfg.podCidrSubnets)
    return {
      ok: false,
      reason: `subnet ${rec.key} is not a /${cfg.subnetLen} (SubnetLen of the network config)`,
    };
  // an IPv6 subnet is checked against the IPv6 network; an IPv4-only node passes it over
  const c6 = cfg.ipv6 ?? null;
  if (
    pair.v6 &&
    c6 &&
    !(cfg.podCidrSubnets ? containsCidr6(c6.network, pair.v6) : isValidSubnet6(c6, pair.v6))
  )
    return {
      ok: false,
      reason: cfg.podCidrSubnets
        ? `IPv6 subnet of ${rec.key} is not inside the IPv6Network of the network config`
        : `IPv6 subnet of ${rec.key} is not a /${c6.subnetLen} inside the IPv6Network of the network config`,
    };
  let doc: unknown;
  try {
    doc = JSON.parse(rec.value);
  } catch {
    return { ok: false, reason: "value is not JSON" };
  }
  const attrs = plainLeaseAttrs(doc) ?? validatedLeaseAttrs(doc);
  if (typeof attrs === "string") return { ok: false, reason: attrs };
  const key = pair.v6 ? subnetKey(subnet, pair.v6) : cidrToKey(subnet);
  const lease: Lease = pair.v6
    ? { subnet, key, subnet6: pair.v6, attrs, expiresAt: rec.expiresAt, revision: rec.revision }
    : { subnet, key, attrs, expiresAt: rec.expiresAt, revision: rec.revision };
  return { ok: true, lease };
}

/** The lease value through the valibot schemas: the attributes, or the issues as text. */
function validatedLeaseAttrs(doc: unknown): LeaseAttrs | string {
  const r = v.safeParse(LeaseValueSchema, doc);
  if (!r.success) return issuesText(r.issues);
  let vxlan: VxlanBackendData | null = null;
  let vxlan6: VxlanBackendData | null = null;
  if (r.output.BackendType === "vxlan") {
    const d = v.safeParse(VxlanDataSchema, r.output.BackendData);
    if (!d.success) return issuesText(d.issues);
    vxlan = { VNI: d.output.VNI, VtepMAC: d.output.VtepMAC.toLowerCase() };
    const d6 = r.output.BackendV6Data ?? null;
    if (d6 !== null) {
      const p6 = v.safeParse(VxlanDataSchema, d6);
      if (!p6.success) return `BackendV6Data: ${issuesText(p6.issues)}`;
      vxlan6 = { VNI: p6.output.VNI, VtepMAC: p6.output.VtepMAC.toLowerCase() };
    }
  }
  const publicIpv6 = r.output.PublicIPv6 == null ? null : parseIp6(r.output.PublicIPv6);
  const attrs = { publicIp: parseIp4(r.output.PublicIP)!, backendType: r.output.BackendType, vxlan };
  return publicIpv6 !== null || vxlan6 !== null ? { ...attrs, publicIpv6, vxlan6 } : attrs;
}

/**
 * The common case without the schema machinery: a plain flannel lease value that every
 * rule of LeaseValueSchema and VxlanDataSchema accepts (this check is at least as
 * strict; anything else, valid or not, goes through the schemas, which also word the
 * reason). 10,000 leases arrive at once on a large cluster: this keeps their decoding
 * from allocating a dozen short-lived objects each. Null = not the plain case.
 */
function plainLeaseAttrs(doc: unknown): LeaseAttrs | null {
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) return null;
  const o = doc as {
    PublicIP?: unknown;
    PublicIPv6?: unknown;
    BackendType?: unknown;
    BackendData?: unknown;
    BackendV6Data?: unknown;
  };
  if (typeof o.PublicIP !== "string") return null;
  const publicIp = parseIp4(o.PublicIP);
  if (publicIp === null) return null;
  const backendType = o.BackendType === undefined ? "" : o.BackendType;
  if (typeof backendType !== "string") return null;
  let publicIpv6: Ip6 | null = null;
  if (o.PublicIPv6 != null) {
    if (typeof o.PublicIPv6 !== "string") return null;
    publicIpv6 = parseIp6(o.PublicIPv6);
    if (publicIpv6 === null) return null;
  }
  const dual = (a: LeaseAttrs, vxlan6: VxlanBackendData | null): LeaseAttrs =>
    publicIpv6 !== null || vxlan6 !== null ? { ...a, publicIpv6, vxlan6 } : a;
  if (backendType !== "vxlan") return dual({ publicIp, backendType, vxlan: null }, null);
  const vxlan = plainVxlanData(o.BackendData);
  if (!vxlan) return null;
  if (o.BackendV6Data == null) return dual({ publicIp, backendType, vxlan }, null);
  const vxlan6 = plainVxlanData(o.BackendV6Data);
  return vxlan6 ? dual({ publicIp, backendType, vxlan }, vxlan6) : null;
}

/** A plain `{"VNI":…,"VtepMAC":…}` that VxlanDataSchema accepts; null otherwise. */
function plainVxlanData(data: unknown): VxlanBackendData | null {
  const d = data as { VNI?: unknown; VtepMAC?: unknown } | null | undefined;
  if (typeof d !== "object" || d === null || Array.isArray(d)) return null;
  const vni = d.VNI;
  if (typeof vni !== "number" || !Number.isInteger(vni) || vni < 0 || vni > 0xffffff) return null;
  if (typeof d.VtepMAC !== "string" || !MAC_RE.test(d.VtepMAC)) return null;
  return { VNI: vni, VtepMAC: d.VtepMAC.toLowerCase() };
}

/** A set of valid leases must not overlap (in either family); returns the leases that clash with `lease`. */
export function overlapping(lease: Lease, others: Iterable<Lease>): Lease[] {
  const out: Lease[] = [];
  const v6 = lease.subnet6 ?? null;
  for (const o of others) {
    if (o.key === lease.key) continue;
    const o6 = o.subnet6 ?? null;
    if (overlaps(o.subnet, lease.subnet) || (v6 !== null && o6 !== null && overlaps6(o6, v6))) out.push(o);
  }
  return out;
}

/** Do two leases publish the same thing? (What a backend programs: a change is an update.) */
export function sameAttrs(a: LeaseAttrs, b: LeaseAttrs): boolean {
  return samePlain(a, b);
}

/**
 * Structural equality of plain data (numbers, strings, null, plain objects, arrays): every
 * field of LeaseAttrs counts, including ones added later, without encoding either side.
 */
function samePlain(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka)
    if (!samePlain((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  return true;
}
