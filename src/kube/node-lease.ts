/**
 * A Node as a lease: what flannel's kube subnet manager reads from a Node (its IPv4
 * podCIDR and the `backend-type`, `backend-data` and `public-ip` annotations) turned
 * into the record an etcd-backed flanneld would have stored: key "10.244.3.0-24", value
 * flannel's lease JSON, no expiry, the Node's resourceVersion as revision. A Node that is
 * not a usable lease says why, with one reason of a fixed set (for counting). Pure.
 */
import { type Cidr, cidrToKey, formatIp4, parseIp4 } from "../config/cidr.ts";
import type { AnnotationNames } from "./annotations.ts";
import { outsideNetwork, selectPodCidrs } from "./pod-cidr.ts";

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

/**
 * The lease a Node announces, or why it announces none. `network` is the configured
 * Network: as flannel, the podCIDR must lie inside it (any prefix length).
 */
export function nodeLease(node: NodeLike, names: AnnotationNames, network: Cidr): NodeLeaseResult {
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
  const outside = outsideNetwork(network, sn);
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
  let parsed: unknown;
  try {
    parsed = JSON.parse(data as string);
  } catch {
    return skip("bad-backend-data", `annotation ${names.backendData} is not JSON: ${JSON.stringify(data)}`);
  }
  let value = `{"PublicIP":${JSON.stringify(formatIp4(ip))},"BackendType":${JSON.stringify(type)}`;
  if (type === "vxlan") {
    const d = parsed as { VNI?: unknown; VtepMAC?: unknown } | null;
    const vni = typeof d === "object" && d !== null ? d.VNI : undefined;
    if (typeof vni !== "number" || !Number.isInteger(vni) || vni < 0 || vni > 0xffffff)
      return skip(
        "bad-backend-data",
        `annotation ${names.backendData} is ${JSON.stringify(data)}: vxlan needs {"VNI":<0..16777215>,"VtepMAC":"…"}`,
      );
    const mac = d!.VtepMAC;
    if (typeof mac !== "string" || !MAC_RE.test(mac))
      return skip(
        "bad-vtep-mac",
        `annotation ${names.backendData} has VtepMAC ${JSON.stringify(mac ?? null)}`,
      );
    value += `,"BackendData":{"VNI":${vni},"VtepMAC":${JSON.stringify(mac)}}`;
  } else if (parsed !== null) {
    value += `,"BackendData":${JSON.stringify(parsed)}`;
  }
  return {
    ok: true,
    name,
    record: {
      key: cidrToKey(sn),
      value: `${value}}`,
      expiresAt: null,
      revision: revisionOf(node.metadata?.resourceVersion),
    },
  };
}
