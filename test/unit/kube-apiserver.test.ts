/**
 * The stand-in API server (test/helpers/kube-apiserver.ts) — a stand-in, not
 * kube-apiserver: its PATCH semantics, its protocol as seen over HTTP, and its wire
 * format as the real kubectl sees it (if kubectl accepts the answers, they are right).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeTestPki, type TestPki } from "../helpers/certs.ts";
import { type KubeApiServer, startKubeApiServer } from "../helpers/kube-apiserver.ts";
import { flanneldVxlanAnnotations, makeNode } from "../helpers/kube-nodes.ts";
import {
  jsonPatch,
  mergePatch,
  NODE_PATCH_SCHEMA,
  PatchError,
  strategicMergePatch,
} from "../helpers/kube-patch.ts";
import { until } from "../helpers/netns.ts";

// biome-ignore lint/suspicious/noExplicitAny: API answers are walked freely here; the assertions check them
type Doc = Record<string, any>;

describe("PATCH semantics", () => {
  const node = {
    metadata: { name: "n1", annotations: { a: "1", b: "2" }, finalizers: ["x"] },
    spec: { podCIDRs: ["198.19.1.0/24"], taints: [{ key: "t1", effect: "NoSchedule" }] },
    status: {
      conditions: [
        { type: "Ready", status: "True" },
        { type: "NetworkUnavailable", status: "True", reason: "NoRouteCreated" },
      ],
    },
  };

  test("strategic: conditions merge by type, podCIDRs and finalizers as sets, other lists replaced", () => {
    const out = strategicMergePatch(
      node,
      {
        metadata: { annotations: { b: null, c: "3" }, finalizers: ["y", "x"] },
        spec: { podCIDRs: ["fd00:19::/64"], taints: [{ key: "t2", effect: "NoExecute" }] },
        status: {
          conditions: [
            { type: "NetworkUnavailable", status: "False", reason: "FlannelIsUp" },
            { type: "PIDPressure", status: "False" },
          ],
        },
      },
      NODE_PATCH_SCHEMA,
    ) as typeof node;
    expect(out.metadata.annotations).toEqual({ a: "1", c: "3" } as never);
    expect(out.metadata.finalizers).toEqual(["x", "y"]);
    expect(out.spec.podCIDRs).toEqual(["198.19.1.0/24", "fd00:19::/64"]);
    expect(out.spec.taints).toEqual([{ key: "t2", effect: "NoExecute" }]);
    expect(out.status.conditions).toEqual([
      { type: "Ready", status: "True" },
      { type: "NetworkUnavailable", status: "False", reason: "FlannelIsUp" },
      { type: "PIDPressure", status: "False" },
    ]);
  });

  test("strategic directives: $patch delete/replace, $setElementOrder, $deleteFromPrimitiveList, $retainKeys", () => {
    const del = strategicMergePatch(
      node,
      { status: { conditions: [{ type: "Ready", $patch: "delete" }] } },
      NODE_PATCH_SCHEMA,
    ) as typeof node;
    expect(del.status.conditions.map((c) => c.type)).toEqual(["NetworkUnavailable"]);
    const rep = strategicMergePatch(
      node,
      { status: { conditions: [{ $patch: "replace" }, { type: "X", status: "True" }] } },
      NODE_PATCH_SCHEMA,
    ) as typeof node;
    expect(rep.status.conditions).toEqual([{ type: "X", status: "True" }]);
    const order = strategicMergePatch(
      node,
      { status: { "$setElementOrder/conditions": [{ type: "NetworkUnavailable" }, { type: "Ready" }] } },
      NODE_PATCH_SCHEMA,
    ) as typeof node;
    expect(order.status.conditions.map((c) => c.type)).toEqual(["NetworkUnavailable", "Ready"]);
    const prim = strategicMergePatch(
      node,
      { metadata: { "$deleteFromPrimitiveList/finalizers": ["x"] } },
      NODE_PATCH_SCHEMA,
    ) as typeof node;
    expect(prim.metadata.finalizers).toEqual([]);
    const retain = strategicMergePatch(
      node,
      { metadata: { $retainKeys: ["name"] } },
      NODE_PATCH_SCHEMA,
    ) as typeof node;
    expect(Object.keys(retain.metadata)).toEqual(["name"]);
    const gone = strategicMergePatch(
      node,
      { metadata: { annotations: { $patch: "delete" } } },
      NODE_PATCH_SCHEMA,
    ) as typeof node;
    expect(gone.metadata.annotations).toBeUndefined();
    expect(() => strategicMergePatch(node, { metadata: { $bogus: 1 } }, NODE_PATCH_SCHEMA)).toThrow(
      PatchError,
    );
    expect(() =>
      strategicMergePatch(node, { status: { conditions: [{ status: "x" }] } }, NODE_PATCH_SCHEMA),
    ).toThrow(/merge key type/);
    // the original is untouched
    expect(node.status.conditions).toHaveLength(2);
  });

  test("merge patch (RFC 7386): lists replaced, null deletes", () => {
    const out = mergePatch(node, {
      metadata: { annotations: { a: null } },
      status: { conditions: [] },
    }) as typeof node;
    expect(out.metadata.annotations).toEqual({ b: "2" } as never);
    expect(out.status.conditions).toEqual([]);
  });

  test("JSON patch (RFC 6902): ops, ~1 escapes, a failed test is 422, bad ops are 400", () => {
    const out = jsonPatch(node, [
      { op: "add", path: "/metadata/annotations/flannel.alpha.coreos.com~1public-ip", value: "198.18.0.1" },
      { op: "remove", path: "/metadata/annotations/a" },
      { op: "replace", path: "/status/conditions/0/status", value: "False" },
      { op: "copy", from: "/metadata/name", path: "/metadata/labels" },
      { op: "move", from: "/metadata/labels", path: "/metadata/generateName" },
      { op: "add", path: "/spec/podCIDRs/-", value: "fd00::/64" },
      { op: "test", path: "/metadata/generateName", value: "n1" },
    ]) as typeof node & { metadata: Record<string, unknown> };
    expect(out.metadata.annotations).toEqual({
      b: "2",
      "flannel.alpha.coreos.com/public-ip": "198.18.0.1",
    } as never);
    expect(out.status.conditions[0]!.status).toBe("False");
    expect(out.spec.podCIDRs).toEqual(["198.19.1.0/24", "fd00::/64"]);
    expect(out.metadata.generateName).toBe("n1");
    const err = (() => {
      try {
        jsonPatch(node, [{ op: "test", path: "/metadata/name", value: "n2" }]);
      } catch (e) {
        return e as PatchError;
      }
    })();
    expect(err?.code).toBe(422);
    expect(() => jsonPatch(node, { op: "add" })).toThrow(/JSON array/);
    expect(() => jsonPatch(node, [{ op: "frob", path: "/x" }])).toThrow(/unknown op/);
    expect(() => jsonPatch(node, [{ op: "remove", path: "/nope/deeper" }])).toThrow(/does not exist/);
  });
});

describe("the protocol over HTTP", () => {
  let api: KubeApiServer;
  beforeAll(async () => {
    api = await startKubeApiServer({ historyLimit: 5, bookmarkIntervalMs: 60_000 });
    for (let i = 1; i <= 5; i++)
      await api.createNode(
        makeNode({ name: `n${i}`, podCIDR: `198.19.${i}.0/24`, internalIp: `198.18.0.${i}` }),
      );
  });
  afterAll(() => api.close());

  const get = async (path: string, init: RequestInit = {}) => {
    const r = await fetch(api.url + path, init);
    return { status: r.status, body: (await r.json()) as Doc };
  };
  const patch = (path: string, type: string, body: unknown) =>
    get(path, { method: "PATCH", headers: { "Content-Type": type }, body: JSON.stringify(body) });

  test("NodeList with resourceVersion; items without kind; fieldSelector; paging over a snapshot", async () => {
    const all = await get("/api/v1/nodes");
    expect(all.body.kind).toBe("NodeList");
    expect(all.body.metadata.resourceVersion).toBe(String(await api.resourceVersion()));
    expect(all.body.items.map((n: Doc) => n.metadata.name)).toEqual(["n1", "n2", "n3", "n4", "n5"]);
    expect(all.body.items[0].kind).toBeUndefined();
    const one = await get("/api/v1/nodes?fieldSelector=metadata.name%3Dn3");
    expect(one.body.items.map((n: Doc) => n.metadata.name)).toEqual(["n3"]);
    expect((await get("/api/v1/nodes?fieldSelector=spec.unschedulable%3Dtrue")).status).toBe(400);
    const p1 = await get("/api/v1/nodes?limit=2");
    expect(p1.body.items).toHaveLength(2);
    expect(p1.body.metadata.remainingItemCount).toBe(3);
    // a write between pages does not show in the rest of the list (a consistent snapshot)
    await api.createNode(makeNode({ name: "n0" }));
    const p2 = await get(`/api/v1/nodes?limit=10&continue=${p1.body.metadata.continue}`);
    expect(p2.body.items.map((n: Doc) => n.metadata.name)).toEqual(["n3", "n4", "n5"]);
    expect(p2.body.metadata.resourceVersion).toBe(p1.body.metadata.resourceVersion);
    expect(p2.body.metadata.continue).toBeUndefined();
    await api.deleteNode("n0");
  });

  test("Status objects: 404, 409 AlreadyExists, 415, 422 podCIDR change, 409 precondition, 405, 400", async () => {
    const nf = await get("/api/v1/nodes/nope");
    expect(nf).toEqual({
      status: 404,
      body: {
        kind: "Status",
        apiVersion: "v1",
        metadata: {},
        status: "Failure",
        message: 'nodes "nope" not found',
        reason: "NotFound",
        details: { name: "nope", kind: "nodes" },
        code: 404,
      },
    });
    const dup = await get("/api/v1/nodes", {
      method: "POST",
      body: JSON.stringify(makeNode({ name: "n1" })),
    });
    expect([dup.status, dup.body.reason]).toEqual([409, "AlreadyExists"]);
    const apply = await patch("/api/v1/nodes/n1", "application/apply-patch+yaml", {});
    expect([apply.status, apply.body.reason]).toEqual([415, "UnsupportedMediaType"]);
    const cidr = await patch("/api/v1/nodes/n1", "application/merge-patch+json", {
      spec: { podCIDR: "198.19.99.0/24" },
    });
    expect([cidr.status, cidr.body.reason]).toEqual([422, "Invalid"]);
    const stale = await patch("/api/v1/nodes/n1", "application/merge-patch+json", {
      metadata: { resourceVersion: "1", labels: { x: "y" } },
    });
    expect([stale.status, stale.body.reason]).toEqual([409, "Conflict"]);
    expect((await get("/api/v1/nodes/n1/status", { method: "DELETE" })).status).toBe(405);
    expect(
      (
        await get("/api/v1/nodes/n1", {
          method: "PATCH",
          headers: { "Content-Type": "application/merge-patch+json" },
          body: "{",
        })
      ).status,
    ).toBe(400);
    expect((await get("/api/v1/namespaces/x/configmaps")).status).toBe(404);
  });

  test("the main resource keeps the status, nodes/status keeps the spec but takes annotations", async () => {
    const main = await patch("/api/v1/nodes/n2", "application/strategic-merge-patch+json", {
      spec: { unschedulable: true },
      status: { conditions: [{ type: "Ready", status: "False" }] },
    });
    expect(main.body.spec.unschedulable).toBe(true);
    expect(main.body.status.conditions[0].status).toBe("True");
    const st = await patch("/api/v1/nodes/n2/status", "application/strategic-merge-patch+json", {
      metadata: { annotations: { "flannel.alpha.coreos.com/public-ip": "198.18.0.2" } },
      spec: { unschedulable: false },
      status: { conditions: [{ type: "NetworkUnavailable", status: "False", reason: "FlannelIsUp" }] },
    });
    expect(st.status).toBe(200);
    expect(st.body.metadata.annotations["flannel.alpha.coreos.com/public-ip"]).toBe("198.18.0.2");
    expect(st.body.spec.unschedulable).toBe(true);
    expect(st.body.status.conditions.map((c: Doc) => c.type)).toEqual(["Ready", "NetworkUnavailable"]);
    // a patch that changes nothing writes nothing
    const rv = await api.resourceVersion();
    const same = await patch("/api/v1/nodes/n2/status", "application/merge-patch+json", {
      metadata: { annotations: { "flannel.alpha.coreos.com/public-ip": "198.18.0.2" } },
    });
    expect(same.body.metadata.resourceVersion).toBe(String(rv));
    expect(await api.resourceVersion()).toBe(rv);
  });

  /** Reads a watch until `n` lines arrived (or the server ends it). */
  async function watchLines(path: string, n: number, during?: () => Promise<unknown>): Promise<Doc[]> {
    const ac = new AbortController();
    // Bun's fetch resolves with the first chunk of the body, so the writes start first
    const pending = fetch(api.url + path, { signal: ac.signal });
    const p = during?.();
    const res = await pending;
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    let buf = "";
    try {
      while (buf.split("\n").filter(Boolean).length < n) {
        const { done, value } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
      }
    } finally {
      ac.abort();
      await p;
    }
    return buf
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l));
  }

  test("watch from a resourceVersion: ADDED, MODIFIED, DELETED in order, and a BOOKMARK", async () => {
    const rv = await api.resourceVersion();
    const lines = await watchLines(
      `/api/v1/nodes?watch=1&resourceVersion=${rv}&allowWatchBookmarks=true`,
      4,
      async () => {
        await until(async () => (await api.watcherCount()) > 0, "the watch to register");
        await api.createNode(makeNode({ name: "w1" }));
        await api.patchNode("w1", { metadata: { labels: { a: "b" } } }, "merge");
        await api.deleteNode("w1");
        await api.bookmark();
      },
    );
    expect(lines.map((l) => [l.type, l.object.kind])).toEqual([
      ["ADDED", "Node"],
      ["MODIFIED", "Node"],
      ["DELETED", "Node"],
      ["BOOKMARK", "Node"],
    ]);
    const rvs = lines.map((l) => Number(l.object.metadata.resourceVersion));
    expect(rvs).toEqual([rv + 1, rv + 2, rv + 3, rv + 3]);
  });

  test("a watch without a resourceVersion starts with the current Nodes; a fieldSelector narrows it", async () => {
    const lines = await watchLines("/api/v1/nodes?watch=true&fieldSelector=metadata.name%3Dn4", 1);
    expect(lines.map((l) => [l.type, l.object.metadata.name])).toEqual([["ADDED", "n4"]]);
  });

  test("too old a resourceVersion (history overflowed, or compacted): an ERROR event with 410 Expired", async () => {
    const rv = await api.resourceVersion();
    for (let i = 0; i < 6; i++)
      await api.patchNode("n5", { metadata: { labels: { i: String(i) } } }, "merge");
    const lines = await watchLines(`/api/v1/nodes?watch=1&resourceVersion=${rv}`, 1);
    expect(lines).toEqual([
      {
        type: "ERROR",
        object: expect.objectContaining({
          kind: "Status",
          code: 410,
          reason: "Expired",
          message: expect.stringContaining(`too old resource version: ${rv}`),
        }),
      },
    ]);
    const now = await api.resourceVersion();
    await api.compact();
    const after = await watchLines(`/api/v1/nodes?watch=1&resourceVersion=${now}`, 1);
    expect(after[0]!.object.code).toBe(410);
  });

  test("pause refuses connections until resume", async () => {
    await api.pause();
    expect(fetch(`${api.url}/version`)).rejects.toThrow();
    await api.resume();
    expect((await get("/version")).body.gitVersion).toContain("standin");
  });
});

// --- the real kubectl against the stand-in -------------------------------------------------

const kubectl = Bun.which("kubectl");
if (!kubectl) console.log("kube-apiserver.test.ts: kubectl is not installed; skipping the kubectl checks");

describe.skipIf(!kubectl)("kubectl accepts the stand-in (HTTPS, bearer token)", () => {
  let api: KubeApiServer;
  let pki: TestPki;
  let home: string;
  let config: string;
  beforeAll(async () => {
    pki = await makeTestPki("127.0.0.1");
    api = await startKubeApiServer({
      token: "s3cret-token",
      tls: { certFile: pki.serverCertFile, keyFile: pki.serverKeyFile },
    });
    home = mkdtempSync(join(tmpdir(), "tartan-kubectl-"));
    config = join(home, "kubeconfig");
    const ca = Buffer.from(await Bun.file(pki.caFile).text()).toString("base64");
    writeFileSync(
      config,
      `apiVersion: v1
kind: Config
current-context: standin
clusters:
- name: standin
  cluster: {server: "${api.url}", certificate-authority-data: ${ca}}
contexts:
- name: standin
  context: {cluster: standin, user: agent}
users:
- name: agent
  user: {token: s3cret-token}
`,
    );
    await api.createNode(
      makeNode({
        name: "node-a",
        podCIDR: "198.19.1.0/24",
        internalIp: "198.18.0.1",
        annotations: flanneldVxlanAnnotations("198.18.0.1", "0e:7a:00:00:00:01"),
        labels: { "node-role.kubernetes.io/control-plane": "" },
        realistic: true,
      }),
    );
    await api.createNode(makeNode({ name: "node-b", podCIDR: "198.19.2.0/24", internalIp: "198.18.0.2" }));
  });
  afterAll(async () => {
    await api?.close();
    pki?.remove();
    if (home) rmSync(home, { recursive: true, force: true });
  });

  const env = () => ({ ...process.env, KUBECONFIG: config, HOME: home });
  async function k(...args: string[]) {
    const p = Bun.spawn([kubectl!, `--cache-dir=${join(home, "cache")}`, ...args], {
      env: env(),
      stdout: "pipe",
      stderr: "pipe",
    });
    const [out, err, code] = await Promise.all([
      new Response(p.stdout).text(),
      new Response(p.stderr).text(),
      p.exited,
    ]);
    return { out, err, code };
  }
  async function ok(...args: string[]) {
    const r = await k(...args);
    if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")} exited ${r.code}: ${r.err}`);
    return r.out;
  }

  test("kubectl get nodes prints the server's table", async () => {
    const lines = (await ok("get", "nodes")).trim().split("\n");
    expect(lines[0]!.split(/\s+/)).toEqual(["NAME", "STATUS", "ROLES", "AGE", "VERSION"]);
    expect(lines[1]).toMatch(/^node-a\s+Ready\s+control-plane\s+\d+s\s+v1\.32\.0$/);
    expect(lines[2]).toMatch(/^node-b\s+Ready\s+<none>\s+\d+s\s*$/);
    const wide = await ok("get", "nodes", "-o", "name");
    expect(wide.trim().split("\n")).toEqual(["node/node-a", "node/node-b"]);
  });

  test("kubectl get node -o json gives the Node with flannel's annotations", async () => {
    const n = JSON.parse(await ok("get", "node", "node-a", "-o", "json"));
    expect(n.kind).toBe("Node");
    expect(n.metadata.annotations["flannel.alpha.coreos.com/backend-data"]).toBe(
      '{"VNI":1,"VtepMAC":"0e:7a:00:00:00:01"}',
    );
    expect(n.spec.podCIDRs).toEqual(["198.19.1.0/24"]);
  });

  test("kubectl annotate and label (merge patches) land in the store", async () => {
    expect(await ok("annotate", "node", "node-b", "example.com/k=v")).toContain("node/node-b annotated");
    expect(await ok("label", "node", "node-b", "zone=a")).toContain("node/node-b labeled");
    const n = (await api.getNode("node-b"))!;
    expect(n.metadata.annotations["example.com/k"]).toBe("v");
    expect(n.metadata.labels.zone).toBe("a");
    // overwriting without --overwrite is refused by kubectl itself, from the object it read
    expect((await k("annotate", "node", "node-b", "example.com/k=w")).code).not.toBe(0);
  });

  test("kubectl patch --subresource=status (strategic) merges conditions by type", async () => {
    await ok(
      "patch",
      "node",
      "node-b",
      "--subresource=status",
      "--type=strategic",
      "-p",
      '{"status":{"conditions":[{"type":"NetworkUnavailable","status":"False","reason":"FlannelIsUp","message":"Flannel is running on this node"}]}}',
    );
    const conds = JSON.parse(await ok("get", "node", "node-b", "-o", "jsonpath={.status.conditions}"));
    expect(conds.map((c: Doc) => `${c.type}=${c.status}`)).toEqual([
      "Ready=True",
      "NetworkUnavailable=False",
    ]);
    await ok(
      "patch",
      "node",
      "node-b",
      "--type=json",
      "-p",
      '[{"op":"add","path":"/metadata/labels/j","value":"p"}]',
    );
    expect((await api.getNode("node-b"))!.metadata.labels.j).toBe("p");
    const bad = await k(
      "patch",
      "node",
      "node-b",
      "--type=merge",
      "-p",
      '{"spec":{"podCIDR":"198.19.9.0/24"}}',
    );
    expect(bad.code).not.toBe(0);
    expect(bad.err).toContain("may not change podCIDR");
  });

  test("kubectl get nodes --watch prints a change as it happens", async () => {
    const p = Bun.spawn(
      [kubectl!, `--cache-dir=${join(home, "cache")}`, "get", "nodes", "--watch", "--output-watch-events"],
      {
        env: env(),
        stdout: "pipe",
        stderr: "pipe",
      },
    );
    let out = "";
    const reading = (async () => {
      const dec = new TextDecoder();
      for await (const chunk of p.stdout) out += dec.decode(chunk);
    })();
    try {
      await until(() => /ADDED\s+node-b/.test(out), "kubectl to print the current nodes", 15_000);
      await api.annotateNodes(["node-a"], { "example.com/watched": "yes" });
      await until(() => /MODIFIED\s+node-a\s+Ready/.test(out), "kubectl to print the change", 15_000);
    } finally {
      p.kill();
      await p.exited;
      await reading;
    }
  });

  test("kubectl create -f and delete node", async () => {
    const f = join(home, "node-c.json");
    writeFileSync(f, JSON.stringify(makeNode({ name: "node-c" })));
    expect(await ok("create", "--validate=false", "-f", f)).toContain("node/node-c created");
    expect(await ok("delete", "node", "node-c")).toContain('node "node-c" deleted');
    expect(await api.getNode("node-c")).toBeNull();
    const gone = await k("get", "node", "node-c");
    expect(gone.code).not.toBe(0);
    expect(gone.err).toContain('nodes "node-c" not found');
  });

  test("a wrong token is refused (401) and kubectl says so", async () => {
    writeFileSync(join(home, "bad"), (await Bun.file(config).text()).replace("s3cret-token", "wrong"));
    const p = Bun.spawn([kubectl!, `--cache-dir=${join(home, "cache2")}`, "get", "nodes"], {
      env: { ...env(), KUBECONFIG: join(home, "bad") },
      stdout: "pipe",
      stderr: "pipe",
    });
    const err = await new Response(p.stderr).text();
    expect(await p.exited).not.toBe(0);
    expect(err).toMatch(/Unauthorized|must be logged in/);
  });
});
