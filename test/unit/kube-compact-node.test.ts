/**
 * What the Node informer keeps of a Node (src/kube/compact-node.ts): our own Node cut
 * down to the fields read from it, every string and object copied (nothing shared with
 * the parsed answer), and detached strings equal to what they copy.
 */
import { describe, expect, test } from "bun:test";
import { compactNode, detached, detachedJson } from "../../src/kube/compact-node.ts";
import { flanneldVxlanAnnotations, macFor, makeNode } from "../helpers/kube-nodes.ts";

type Obj = Record<string, unknown>;

/** A realistic Node as the API sends it (parsed from JSON, as the client gets it). */
function apiNode(): Obj {
  const n = makeNode({
    name: "node-7",
    podCIDR: "198.19.7.0/24",
    internalIp: "198.18.0.7",
    annotations: flanneldVxlanAnnotations("198.18.0.7", macFor(7)),
    realistic: true,
  }) as Obj;
  (n.metadata as Obj).resourceVersion = "4711";
  return JSON.parse(JSON.stringify(n)) as Obj;
}

describe("compactNode", () => {
  test("keeps name, resourceVersion, annotations, podCIDR(s) and conditions; drops the rest", () => {
    const node = apiNode();
    const meta = node.metadata as Obj;
    const status = node.status as Obj;
    // what a real Node carries and the informer must not keep
    expect(meta.managedFields).toBeDefined();
    expect(meta.labels).toBeDefined();
    expect(status.images).toBeDefined();
    expect(status.nodeInfo).toBeDefined();

    const c = compactNode(node);
    expect(Object.keys(c).sort()).toEqual(["metadata", "spec", "status"]);
    expect(Object.keys(c.metadata).sort()).toEqual(["annotations", "name", "resourceVersion"]);
    expect(c.metadata).toEqual({
      name: "node-7",
      resourceVersion: "4711",
      annotations: meta.annotations,
    });
    expect(c.spec).toEqual({ podCIDR: "198.19.7.0/24", podCIDRs: ["198.19.7.0/24"] });
    expect(Object.keys(c.status)).toEqual(["conditions"]);
    expect(c.status.conditions).toEqual(status.conditions);
    // several times smaller than what it came from
    expect(JSON.stringify(c).length * 3).toBeLessThan(JSON.stringify(node).length);
  });

  test("shares no object with the Node it came from", () => {
    const node = apiNode();
    const c = compactNode(node);
    const ann = (node.metadata as Obj).annotations as Obj;
    expect(c.metadata.annotations).not.toBe(ann);
    expect(c.status.conditions).not.toBe((node.status as Obj).conditions);
    ann["flannel.alpha.coreos.com/public-ip"] = "198.18.9.9";
    ((node.status as Obj).conditions as Obj[]).length = 0;
    expect((c.metadata.annotations as Obj)["flannel.alpha.coreos.com/public-ip"]).toBe("198.18.0.7");
    expect((c.status.conditions as unknown[]).length).toBeGreaterThan(0);
  });

  test("absent fields stay absent; not an object: empty parts", () => {
    expect(compactNode({ metadata: { name: "bare" } })).toEqual({
      metadata: { name: "bare" },
      spec: {},
      status: {},
    });
    expect(compactNode(null)).toEqual({ metadata: {}, spec: {}, status: {} });
    expect(compactNode({ metadata: "x", spec: 3 })).toEqual({ metadata: {}, spec: {}, status: {} });
  });
});

describe("detached", () => {
  test("equal to what it copies: ASCII, ropes, non-Latin-1, empty; a lone surrogate stays as it is", () => {
    const rope = `${"{".repeat(3)}${"PublicIP".toLowerCase()}${String(42)}`;
    for (const s of [rope, "node-1", "Zürich 東京 🚀", "", "\ud800x"]) expect(detached(s)).toBe(s);
  });

  test("detachedJson rebuilds objects and arrays equal to the input", () => {
    const v = { a: ["x", 1, null, { b: true, "k:ü": "ü" }], c: "d" };
    const d = detachedJson(v) as typeof v;
    expect(d).toEqual(v);
    expect(d.a).not.toBe(v.a);
    expect(d.a[3]).not.toBe(v.a[3]);
  });
});
