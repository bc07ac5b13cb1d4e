/**
 * Leases: the subnet a node holds and what it publishes (PublicIP, backend type and data),
 * and flannel's exact lease JSON. Records from the registry are validated here, once.
 */
import * as v from "valibot";
import {
  type Cidr,
  cidrToKey,
  containsCidr,
  formatIp4,
  type Ip4,
  keyToCidr,
  overlaps,
  parseIp4,
} from "../config/cidr.ts";
import type { NetworkConfig } from "../config/network.ts";
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
}

export interface Lease {
  readonly subnet: Cidr;
  /** flannel key, "10.244.3.0-24" */
  readonly key: string;
  readonly attrs: LeaseAttrs;
  /** ms since epoch; null = reservation (never expires) */
  readonly expiresAt: number | null;
  readonly revision: number;
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

/** Encodes lease attributes in flannel's exact JSON (field order and omissions as flanneld's Go structs). */
export function encodeLeaseValue(attrs: LeaseAttrs): string {
  const publicIp = JSON.stringify(formatIp4(attrs.publicIp));
  let s = `{"PublicIP":${publicIp}`;
  if (attrs.backendType) s += `,"BackendType":${JSON.stringify(attrs.backendType)}`;
  if (attrs.vxlan)
    s += `,"BackendData":{"VNI":${attrs.vxlan.VNI},"VtepMAC":${JSON.stringify(attrs.vxlan.VtepMAC)}}`;
  return `${s}}`;
}

const LeaseValueSchema = v.looseObject({
  PublicIP: v.pipe(
    v.string("PublicIP must be a string"),
    v.check((s) => parseIp4(s) !== null, "PublicIP must be an IPv4 address"),
  ),
  BackendType: v.optional(v.string("BackendType must be a string"), ""),
  BackendData: v.optional(v.unknown()),
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
 * of the configured length inside the network; the value flannel's lease JSON, with
 * vxlan BackendData when BackendType is vxlan.
 */
export function decodeLeaseRecord(rec: RegistryRecord, cfg: NetworkConfig): DecodeResult {
  const subnet = keyToCidr(rec.key);
  if (!subnet)
    return { ok: false, reason: `key ${JSON.stringify(rec.key)} is not a subnet like 10.244.3.0-24` };
  if (!containsCidr(cfg.network, subnet))
    return { ok: false, reason: `subnet ${rec.key} is outside the network` };
  if (subnet.len !== cfg.subnetLen)
    return {
      ok: false,
      reason: `subnet ${rec.key} is not a /${cfg.subnetLen} (SubnetLen of the network config)`,
    };
  let doc: unknown;
  try {
    doc = JSON.parse(rec.value);
  } catch {
    return { ok: false, reason: "value is not JSON" };
  }
  const attrs = plainLeaseAttrs(doc) ?? validatedLeaseAttrs(doc);
  if (typeof attrs === "string") return { ok: false, reason: attrs };
  return {
    ok: true,
    lease: { subnet, key: cidrToKey(subnet), attrs, expiresAt: rec.expiresAt, revision: rec.revision },
  };
}

/** The lease value through the valibot schemas: the attributes, or the issues as text. */
function validatedLeaseAttrs(doc: unknown): LeaseAttrs | string {
  const r = v.safeParse(LeaseValueSchema, doc);
  if (!r.success) return issuesText(r.issues);
  let vxlan: VxlanBackendData | null = null;
  if (r.output.BackendType === "vxlan") {
    const d = v.safeParse(VxlanDataSchema, r.output.BackendData);
    if (!d.success) return issuesText(d.issues);
    vxlan = { VNI: d.output.VNI, VtepMAC: d.output.VtepMAC.toLowerCase() };
  }
  return { publicIp: parseIp4(r.output.PublicIP)!, backendType: r.output.BackendType, vxlan };
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
  const o = doc as { PublicIP?: unknown; BackendType?: unknown; BackendData?: unknown };
  if (typeof o.PublicIP !== "string") return null;
  const publicIp = parseIp4(o.PublicIP);
  if (publicIp === null) return null;
  const backendType = o.BackendType === undefined ? "" : o.BackendType;
  if (typeof backendType !== "string") return null;
  if (backendType !== "vxlan") return { publicIp, backendType, vxlan: null };
  const d = o.BackendData as { VNI?: unknown; VtepMAC?: unknown } | null | undefined;
  if (typeof d !== "object" || d === null || Array.isArray(d)) return null;
  const vni = d.VNI;
  if (typeof vni !== "number" || !Number.isInteger(vni) || vni < 0 || vni > 0xffffff) return null;
  if (typeof d.VtepMAC !== "string" || !MAC_RE.test(d.VtepMAC)) return null;
  return { publicIp, backendType, vxlan: { VNI: vni, VtepMAC: d.VtepMAC.toLowerCase() } };
}

/** A set of valid leases must not overlap; returns the subnets of `lease` that clash with `others`. */
export function overlapping(lease: Lease, others: Iterable<Lease>): Lease[] {
  const out: Lease[] = [];
  for (const o of others) if (o.key !== lease.key && overlaps(o.subnet, lease.subnet)) out.push(o);
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
