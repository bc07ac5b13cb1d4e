/**
 * A Node as a lease: what flannel's kube subnet manager reads from a Node (its IPv4
 * podCIDR and the `backend-type`, `backend-data` and `public-ip` annotations; in a
 * dual-stack network also its IPv6 podCIDR, `public-ipv6` and `backend-v6-data`) turned
 * into the record an etcd-backed flanneld would have stored: key "10.244.3.0-24" (dual
 * stack "10.244.3.0-24&fd00:19:0:3::-64"), value flannel's lease JSON, no expiry, the
 * Node's resourceVersion as revision. A Node that is not a usable lease says why, with
 * one reason of a fixed set (for counting). Pure.
 */
import { cidrToKey, formatIp4, parseIp4 } from "../config/cidr.ts";
import { type Cidr6, formatIp6, parseIp6 } from "../config/cidr6.ts";
import { subnetKey } from "../config/subnet-key.ts";
import type { AnnotationNames } from "./annotations.ts";
import { detached } from "./compact-node.ts";
import { outsideNetwork, outsideNetwork6, type PodNetworks, selectPodCidrs } from "./pod-cidr.ts";

/** A lease record, shaped as the registries' RegistryRecord (src/registry/registry.ts). */
export interface NodeLeaseRecord {
  readonly key: string;
  readonly value: string;
  readonly expiresAt: null;
  readonly revision: number;
}

export const SKIP_REASONS = [
  "malformed",
  "not-managed",
  "no-podcidr",
  "bad-podcidr",
  "no-ipv4-podcidr",
  "outside-network",
  "missing-annotation",
  "bad-public-ip",
  "bad-backend-data",
  "bad-vtep-mac",
  "duplicate-podcidr",
] as const;
export type SkipReason = (typeof SKIP_REASONS)[number];

export type NodeLeaseResult =
  | { readonly ok: true; readonly name: string; readonly record: NodeLeaseRecord }
  | {
      readonly ok: false;
      readonly name: string;
      readonly reason: SkipReason;
      /** One line for the log: what is wrong, with the value. */
      readonly detail: string;
    };

/** The few fields of a Node read here; anything else in the object is ignored. */
export interface NodeLike {
  readonly metadata?: {
    readonly name?: unknown;
    readonly resourceVersion?: unknown;
    readonly annotations?: unknown;
  };
  readonly spec?: { readonly podCIDR?: unknown; readonly podCIDRs?: unknown };
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

/** The Node's resourceVersion as a number (0 when it is not one: it is opaque to clients). */
export function revisionOf(rv: unknown): number {
  const n = typeof rv === "string" ? Number(rv) : Number.NaN;
  return Number.isSafeInteger(n) && n >= 0 ? n : 0;
}

export function annotationsOf(node: NodeLike): Readonly<Record<string, unknown>> {
  const a = node.metadata?.annotations;
  return typeof a === "object" && a !== null && !Array.isArray(a) ? (a as Record<string, unknown>) : {};
}

type Skip = { readonly reason: SkipReason; readonly detail: string };

/** `{"VNI":…,"VtepMAC":…}` from a vxlan backend-data annotation, or why it is not one. */
function vxlanData(key: string, data: string): string | Skip {
  let d: unknown;
  try {
    d = JSON.parse(data);
  } catch {
    return { reason: "bad-backend-data", detail: `annotation ${key} is not JSON: ${JSON.stringify(data)}` };
  }
  const o = d as { VNI?: unknown; VtepMAC?: unknown } | null;
  const vni = typeof o === "object" && o !== null ? o.VNI : undefined;
  if (typeof vni !== "number" || !Number.isInteger(vni) || vni < 0 || vni > 0xffffff)
    return {
      reason: "bad-backend-data",
      detail: `annotation ${key} is ${JSON.stringify(data)}: vxlan needs {"VNI":<0..16777215>,"VtepMAC":"…"}`,
    };
  const mac = o!.VtepMAC;
  if (typeof mac !== "string" || !MAC_RE.test(mac))
    return { reason: "bad-vtep-mac", detail: `annotation ${key} has VtepMAC ${JSON.stringify(mac ?? null)}` };
  return `{"VNI":${vni},"VtepMAC":${JSON.stringify(mac)}}`;
}

/** Another backend's data annotation as JSON text ("null" stays null), or why it is not JSON. */
function otherData(key: string, data: string): string | null | Skip {
  let d: unknown;
  try {
    d = JSON.parse(data);
  } catch {
    return { reason: "bad-backend-data", detail: `annotation ${key} is not JSON: ${JSON.stringify(data)}` };
  }
  return d === null ? null : JSON.stringify(d);
}

const isSkip = (x: unknown): x is Skip => typeof x === "object" && x !== null && "reason" in x;

/** The IPv6 half a dual-stack Node announces: its subnet, PublicIPv6 and BackendV6Data JSON. */
interface V6Half {
  readonly subnet: Cidr6;
  readonly publicIp: string;
  readonly data: string | null;
}

/**
 * The IPv6 half of a Node in a dual-stack network, null when it announces none (no
 * `public-ipv6`, or no IPv6 podCIDR: it is an IPv4 peer, as a registry's IPv4-only lease
 * is), or why what it announces is wrong.
 */
function v6Half(
  ann: Readonly<Record<string, unknown>>,
  names: AnnotationNames,
  type: string,
  subnet: Cidr6 | null,
  network6: Cidr6,
): V6Half | null | Skip {
  const pub = ann[names.publicIpv6];
  if (typeof pub !== "string" || pub === "" || subnet === null) return null;
  const ip = parseIp6(pub);
  if (ip === null)
    return {
      reason: "bad-public-ip",
      detail: `annotation ${names.publicIpv6} is ${JSON.stringify(pub)}, not an IPv6 address`,
    };
  const outside = outsideNetwork6(network6, subnet);
  if (outside) return { reason: "outside-network", detail: outside };
  const raw = ann[names.backendV6Data];
  const has = typeof raw === "string" && raw !== "" && raw !== "null";
  if (type === "vxlan") {
    if (!has)
      return {
        reason: "missing-annotation",
        detail: `annotation ${names.backendV6Data} is missing (a vxlan node with ${names.publicIpv6} needs it)`,
      };
    const d = vxlanData(names.backendV6Data, raw as string);
    return isSkip(d) ? d : { subnet, publicIp: formatIp6(ip), data: d };
  }
  const d = has ? otherData(names.backendV6Data, raw as string) : null;
  return isSkip(d) ? d : { subnet, publicIp: formatIp6(ip), data: d };
}

/**
 * The lease a Node announces, or why it announces none. `nets` are the configured
 * Network and (EnableIPv6) IPv6Network: as flannel, a podCIDR must lie inside its
 * family's network (any prefix length). In a dual-stack network a Node without
 * `public-ipv6` or without an IPv6 podCIDR is an IPv4-only lease.
 */
export function nodeLease(node: NodeLike, names: AnnotationNames, nets: PodNetworks): NodeLeaseResult {
  const rawName = node.metadata?.name;
  const name = typeof rawName === "string" ? rawName : "";
  const skip = (reason: SkipReason, detail: string): NodeLeaseResult => ({ ok: false, name, reason, detail });
  if (name === "") return skip("malformed", "the object has no metadata.name");
  const ann = annotationsOf(node);
  if (ann[names.kubeSubnetManager] !== "true")
    return skip(
      "not-managed",
      `annotation ${names.kubeSubnetManager} is ${JSON.stringify(ann[names.kubeSubnetManager] ?? null)}, not "true"`,
    );
  const pc = selectPodCidrs(node.spec);
  if (!pc.ok) return skip(pc.missing ? "no-podcidr" : "bad-podcidr", pc.why);
  const sn = pc.cidrs.v4;
  if (!sn) return skip("no-ipv4-podcidr", "the node has no IPv4 podCIDR");
  const outside = outsideNetwork(nets.network, sn);
  if (outside) return skip("outside-network", outside);

  const type = ann[names.backendType];
  const data = ann[names.backendData];
  const publicIp = ann[names.publicIp];
  for (const [k, v] of [
    [names.backendType, type],
    [names.backendData, data],
    [names.publicIp, publicIp],
  ] as const)
    if (typeof v !== "string" || v === "") return skip("missing-annotation", `annotation ${k} is missing`);
  const ip = parseIp4(publicIp as string);
  if (ip === null)
    return skip(
      "bad-public-ip",
      `annotation ${names.publicIp} is ${JSON.stringify(publicIp)}, not an IPv4 address`,
    );
  const d4 =
    type === "vxlan"
      ? vxlanData(names.backendData, data as string)
      : otherData(names.backendData, data as string);
  if (isSkip(d4)) return skip(d4.reason, d4.detail);
  const v6 = nets.network6 ? v6Half(ann, names, type as string, pc.cidrs.v6, nets.network6) : null;
  if (isSkip(v6)) return skip(v6.reason, v6.detail);
  // flannel's field order: PublicIP, PublicIPv6, BackendType, BackendData, BackendV6Data
  let value = `{"PublicIP":${JSON.stringify(formatIp4(ip))}`;
  if (v6) value += `,"PublicIPv6":${JSON.stringify(v6.publicIp)}`;
  value += `,"BackendType":${JSON.stringify(type)}`;
  if (d4 !== null) value += `,"BackendData":${d4}`;
  if (v6 && v6.data !== null) value += `,"BackendV6Data":${v6.data}`;
  return {
    ok: true,
    name,
    // built of pieces of the parsed Node: detached, so that keeping the record keeps none of it
    record: {
      key: detached(v6 ? subnetKey(sn, v6.subnet) : cidrToKey(sn)),
      value: detached(`${value}}`),
      expiresAt: null,
      revision: revisionOf(node.metadata?.resourceVersion),
    },
  };
}
