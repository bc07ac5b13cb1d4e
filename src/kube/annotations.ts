/**
 * flannel's Node annotations: their names under `--kube-annotation-prefix` (flannel's
 * rules for the prefix), the values a node publishes about itself, byte for byte as
 * flanneld writes them, and the smallest patch that brings a Node's annotations there.
 * Pure.
 */
import { ValidationError } from "../validation.ts";

export const DEFAULT_ANNOTATION_PREFIX = "flannel.alpha.coreos.com";

/** The full annotation keys for one prefix (flannel's `annotations` struct). */
export interface AnnotationNames {
  readonly kubeSubnetManager: string;
  readonly backendType: string;
  readonly backendData: string;
  readonly backendV6Data: string;
  readonly publicIp: string;
  readonly publicIpv6: string;
  /** Set by an operator: the address this node's agent uses, instead of --public-ip. */
  readonly nodePublicIp: string;
  readonly nodePublicIpv6: string;
  /** Set by an operator: the address published in `public-ip`, whatever the agent uses. */
  readonly publicIpOverwrite: string;
  readonly publicIpv6Overwrite: string;
}

// flannel's check: an FQDN, one slash, then an optional lowercase word ending in "-"
const PREFIX_RE = /(?:[a-z0-9_-]+\.)+[a-z0-9_-]+\/(?:[a-z0-9_-]+-)?$/;

/** flannel's normalised prefix ("org.com/" or "org.com/x-"), or why `prefix` is not one. */
function normalisedPrefix(prefix: string): { ok: true; p: string } | { ok: false; why: string } {
  if (prefix.split("/").length - 1 > 1) return { ok: false, why: "may contain at most one slash" };
  let p = prefix.includes("/") ? prefix : `${prefix}/`;
  if (!p.endsWith("/") && !p.endsWith("-")) p += "-";
  // unanchored at the start, as flannel's regexp.MatchString: its end anchor does the work
  if (!PREFIX_RE.test(p))
    return {
      ok: false,
      why: "must be a lowercase domain name, optionally followed by /word (e.g. flannel.alpha.coreos.com)",
    };
  return { ok: true, p };
}

/** Why `prefix` is not a valid --kube-annotation-prefix (flannel's rules), or null when it is. */
export function annotationPrefixProblem(prefix: string): string | null {
  const r = normalisedPrefix(prefix);
  return r.ok ? null : r.why;
}

/**
 * The annotation names for `--kube-annotation-prefix`, as flannel derives them: "org.com"
 * gives "org.com/backend-type", "org.com/x" gives "org.com/x-backend-type". Throws a
 * ValidationError naming the flag and what is allowed.
 */
export function annotationNames(prefix: string = DEFAULT_ANNOTATION_PREFIX): AnnotationNames {
  const r = normalisedPrefix(prefix);
  if (!r.ok) throw new ValidationError(`--kube-annotation-prefix=${JSON.stringify(prefix)}: ${r.why}`);
  const { p } = r;
  return {
    kubeSubnetManager: `${p}kube-subnet-manager`,
    backendType: `${p}backend-type`,
    backendData: `${p}backend-data`,
    backendV6Data: `${p}backend-v6-data`,
    publicIp: `${p}public-ip`,
    publicIpv6: `${p}public-ipv6`,
    nodePublicIp: `${p}node-public-ip`,
    nodePublicIpv6: `${p}node-public-ipv6`,
    publicIpOverwrite: `${p}public-ip-overwrite`,
    publicIpv6Overwrite: `${p}public-ipv6-overwrite`,
  };
}

export type Annotations = Readonly<Record<string, string>>;

/** What this node announces (the IPv4 half of flannel's LeaseAttrs). */
export interface PublishedAttrs {
  /** Dotted IPv4: the address the agent chose (node-public-ip, --public-ip or the interface's). */
  readonly publicIp: string;
  /** The wire backend: "vxlan" (also for ebpf-vxlan), "host-gw", … */
  readonly backendType: string;
  /** vxlan: VNI and VTEP MAC; null for backends without data (host-gw). */
  readonly vxlan: { readonly VNI: number; readonly VtepMAC: string } | null;
}

/**
 * The `backend-data` annotation exactly as flanneld writes it: Go's json.Marshal of
 * `{VNI, VtepMAC}` (that field order, no spaces, the MAC lowercase as net.HardwareAddr
 * prints it), or the literal `null` for a backend without data.
 */
export function backendDataValue(vxlan: PublishedAttrs["vxlan"]): string {
  if (!vxlan) return "null";
  return `{"VNI":${vxlan.VNI},"VtepMAC":${JSON.stringify(vxlan.VtepMAC.toLowerCase())}}`;
}

/**
 * The annotations a node should carry, as flannel's AcquireLease sets them: backend type
 * and data, public IP (the `public-ip-overwrite` annotation wins when set), and
 * `kube-subnet-manager: "true"`. A vxlan node without data (no IPv4) publishes only its
 * type and the manager flag, as flannel does.
 */
export function desiredAnnotations(
  names: AnnotationNames,
  attrs: PublishedAttrs,
  current: Annotations,
): Record<string, string> {
  const out: Record<string, string> = { [names.backendType]: attrs.backendType };
  const data = backendDataValue(attrs.vxlan);
  if (attrs.backendType !== "vxlan" || data !== "null") {
    out[names.backendData] = data;
    const overwrite = current[names.publicIpOverwrite];
    out[names.publicIp] = overwrite ? overwrite : attrs.publicIp;
  }
  out[names.kubeSubnetManager] = "true";
  return out;
}

/**
 * The strategic-merge patch body that sets only the annotations whose value differs, keys
 * sorted (as Go marshals a map); null when the Node already carries all of them.
 */
export function annotationPatch(
  current: Annotations,
  desired: Readonly<Record<string, string>>,
): string | null {
  const changed = Object.keys(desired)
    .filter((k) => current[k] !== desired[k])
    .sort();
  if (changed.length === 0) return null;
  const body: Record<string, string> = {};
  for (const k of changed) body[k] = desired[k]!;
  return JSON.stringify({ metadata: { annotations: body } });
}

/** The `node-public-ip` annotation: an operator's choice of this node's address, or null. */
export function annotatedPublicIp(names: AnnotationNames, current: Annotations): string | null {
  const v = current[names.nodePublicIp];
  return v ? v : null;
}
