/**
 * What the Node informer keeps of a Node, in memory of its own. A list page or a watch
 * read is parsed into a large graph of short strings and objects (managedFields, images,
 * conditions, labels: ~6 KB of JSON per Node); every string kept from it stays where the
 * parser put it, among that garbage, and keeps the allocator's page around it resident
 * after the rest is freed (measured: bench/CONTROL-PLANE.md, "Node informer"). So what
 * outlives a page — node names, lease keys and values, our own Node — is copied here
 * into fresh strings, and our own Node is cut down to the fields read from it: name,
 * resourceVersion, annotations, podCIDR(s) and the conditions. Pure.
 */
import type { NodeLike } from "./node-lease.ts";

/** `s` copied into a string of its own (flat, not a rope or a slice of what it came from). */
export function detached(s: string): string {
  // a lone surrogate would not survive UTF-8: such a string stays as it is (never seen in practice)
  return s.length === 0 || !s.isWellFormed() ? s : Buffer.from(s, "utf8").toString("utf8");
}

/** A JSON value rebuilt with detached strings (objects and arrays copied, other values as they are). */
export function detachedJson(v: unknown): unknown {
  if (typeof v === "string") return detached(v);
  if (Array.isArray(v)) return v.map(detachedJson);
  if (typeof v === "object" && v !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[detached(k)] = detachedJson(x);
    return out;
  }
  return v;
}

/** The parts of our own Node that are read (publish, markNetworkUp, the doctor, our subnet). */
export interface CompactNode extends NodeLike {
  readonly metadata: {
    readonly name?: unknown;
    readonly resourceVersion?: unknown;
    readonly annotations?: unknown;
  };
  readonly spec: { readonly podCIDR?: unknown; readonly podCIDRs?: unknown };
  readonly status: { readonly conditions?: unknown };
}

/** `node` cut down to CompactNode's fields, its strings detached; absent fields stay absent. */
export function compactNode(node: unknown): CompactNode {
  const n = (typeof node === "object" && node !== null ? node : {}) as {
    metadata?: Record<string, unknown>;
    spec?: Record<string, unknown>;
    status?: Record<string, unknown>;
  };
  const pick = (o: Record<string, unknown> | undefined, keys: readonly string[]) => {
    const out: Record<string, unknown> = {};
    if (typeof o !== "object" || o === null) return out;
    for (const k of keys) if (o[k] !== undefined) out[k] = detachedJson(o[k]);
    return out;
  };
  return {
    metadata: pick(n.metadata, ["name", "resourceVersion", "annotations"]),
    spec: pick(n.spec, ["podCIDR", "podCIDRs"]),
    status: pick(n.status, ["conditions"]),
  };
}
