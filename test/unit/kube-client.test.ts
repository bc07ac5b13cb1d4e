/**
 * Tartan's Kubernetes client and the kube lease source against the stand-in API server
 * (test/helpers/kube-apiserver.ts) on loopback: TLS and authentication, paged lists,
 * the node name, and the lease source's list + watch — events for every change that
 * matters and none for the rest, 410 → one resync, an outage reported once and
 * recovered from without losing a change, bookmarks, a watch gone quiet — and the
 * own-node patches (only what differs, on nodes/NAME/status).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseCidr } from "../../src/config/cidr.ts";
import { annotationNames } from "../../src/kube/annotations.ts";
import { KubeApiError, KubeClient } from "../../src/kube/client.ts";
import { type KubeConnection, resolveConnection } from "../../src/kube/connection.ts";
import { KubeLeaseSource, type LeaseEvent, type OwnNode } from "../../src/kube/lease-source.ts";
import { resolveNodeName } from "../../src/kube/node-name.ts";
import { listNodesInto, startNodeWatch } from "../../src/kube/node-watch.ts";
import { createLogger, silentLogger } from "../../src/log.ts";
import { makeTestPki, type TestPki } from "../helpers/certs.ts";
import { type KubeApiServer, startKubeApiServer } from "../helpers/kube-apiserver.ts";
import { flanneldVxlanAnnotations, macFor, makeNode } from "../helpers/kube-nodes.ts";
import { until } from "../helpers/netns.ts";

const names = annotationNames();
/** The error a call fails with (a success fails the test). */
const failure = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error("expected the call to fail");
    },
    (e: unknown) => e as KubeApiError,
  );
const network = parseCidr("198.19.0.0/16")!;
const plain = (server: string): KubeConnection => resolveConnection({ apiUrl: server }, {});

function flannelNode(i: number, extra: { annotations?: Record<string, string>; podCIDR?: string } = {}) {
  return makeNode({
    name: `node-${i}`,
    podCIDR: "podCIDR" in extra ? extra.podCIDR : `198.19.${i}.0/24`,
    internalIp: `198.18.0.${i}`,
    annotations: { ...flanneldVxlanAnnotations(`198.18.0.${i}`, macFor(i)), ...extra.annotations },
    realistic: true,
  });
}

describe("connecting", () => {
  let pki: TestPki;
  let api: KubeApiServer;
  let dir: string;
  beforeAll(async () => {
    pki = await makeTestPki("127.0.0.1");
    api = await startKubeApiServer({
      tls: { certFile: pki.serverCertFile, keyFile: pki.serverKeyFile, clientCaFile: pki.caFile },
      token: "t0ken",
    });
    await api.createNode(flannelNode(1));
    await api.createPod("kube-flannel", "tartan-abcde", "node-1");
    dir = mkdtempSync(join(tmpdir(), "tartan-kube-client-"));
  });
  afterAll(async () => {
    await api?.close();
    pki?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function kubeconfig(user: string): string {
    const f = join(dir, `kubeconfig-${Math.random().toString(36).slice(2)}`);
    writeFileSync(
      f,
      `apiVersion: v1
kind: Config
current-context: c
clusters: [{name: k, cluster: {server: "${api.url}", certificate-authority: ${pki.caFile}}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
users: [{name: u, user: ${user}}]
`,
    );
    return f;
  }

  test("HTTPS with the kubeconfig's CA, client certificate and token", async () => {
    const conn = resolveConnection({
      kubeconfigFile: kubeconfig(
        `{token: t0ken, client-certificate: ${pki.clientCertFile}, client-key: ${pki.clientKeyFile}}`,
      ),
    });
    const c = new KubeClient(conn);
    const n = (await c.getNode("node-1")) as { metadata: { name: string } };
    expect(n.metadata.name).toBe("node-1");
    c.close();
  });

  test("a wrong token is a 401 KubeApiError; no client certificate fails the handshake", async () => {
    const bad = new KubeClient(
      resolveConnection({
        kubeconfigFile: kubeconfig(
          `{token: nope, client-certificate: ${pki.clientCertFile}, client-key: ${pki.clientKeyFile}}`,
        ),
      }),
    );
    const e = await failure(bad.getNode("node-1"));
    expect(e).toBeInstanceOf(KubeApiError);
    expect([e.status, e.reason]).toEqual([401, "Unauthorized"]);
    const nocert = new KubeClient(resolveConnection({ kubeconfigFile: kubeconfig("{token: t0ken}") }));
    const e2 = await failure(nocert.getNode("node-1"));
    expect(e2).toBeInstanceOf(KubeApiError);
    expect(e2.status).toBe(0);
  });

  test("an untrusted server certificate is refused unless insecure-skip-tls-verify", async () => {
    const base = resolveConnection({
      kubeconfigFile: kubeconfig(
        `{token: t0ken, client-certificate: ${pki.clientCertFile}, client-key: ${pki.clientKeyFile}}`,
      ),
    });
    const untrusted = new KubeClient({ ...base, ca: null });
    expect((await failure(untrusted.getNode("node-1"))).status).toBe(0);
    const insecure = new KubeClient({ ...base, ca: null, insecureSkipTlsVerify: true });
    expect(((await insecure.getNode("node-1")) as { metadata: { name: string } }).metadata.name).toBe(
      "node-1",
    );
  });

  test("a token file is re-read once a minute (rotated service-account tokens)", async () => {
    const tokenFile = join(dir, "token");
    writeFileSync(tokenFile, "old\n");
    let now = 1_000_000;
    const base = resolveConnection({
      kubeconfigFile: kubeconfig(
        `{tokenFile: ${tokenFile}, client-certificate: ${pki.clientCertFile}, client-key: ${pki.clientKeyFile}}`,
      ),
    });
    const c = new KubeClient(base, { now: () => now });
    expect((await failure(c.getNode("node-1"))).status).toBe(401);
    writeFileSync(tokenFile, "t0ken\n");
    now += 30_000;
    expect((await failure(c.getNode("node-1"))).status).toBe(401); // still the cached one
    now += 30_000;
    expect(((await c.getNode("node-1")) as { metadata: { name: string } }).metadata.name).toBe("node-1");
    expect(readFileSync(tokenFile, "utf8")).toBe("t0ken\n");
  });

  test("the node name: NODE_NAME, else the pod's spec.nodeName", async () => {
    const c = new KubeClient(
      resolveConnection({
        kubeconfigFile: kubeconfig(
          `{token: t0ken, client-certificate: ${pki.clientCertFile}, client-key: ${pki.clientKeyFile}}`,
        ),
      }),
    );
    expect(await resolveNodeName({ NODE_NAME: "given" }, c)).toBe("given");
    expect(await resolveNodeName({ POD_NAME: "tartan-abcde", POD_NAMESPACE: "kube-flannel" }, c)).toBe(
      "node-1",
    );
    await expect(resolveNodeName({ POD_NAME: "x" }, c)).rejects.toThrow(
      /set NODE_NAME, or POD_NAME and POD_NAMESPACE/,
    );
    await expect(resolveNodeName({ POD_NAME: "gone", POD_NAMESPACE: "kube-flannel" }, c)).rejects.toThrow(
      /cannot read pod kube-flannel\/gone.*404/,
    );
  });
});

/** Collects what a lease source delivers. */
function recorder() {
  const events: LeaseEvent[] = [];
  const batches: number[] = [];
  let errors = 0;
  let recovered = 0;
  return {
    events,
    batches,
    get errors() {
      return errors;
    },
    get recovered() {
      return recovered;
    },
    cb: {
      onEvents: (evs: readonly LeaseEvent[]) => {
        events.push(...evs);
        batches.push(evs.length);
      },
      onError: () => {
        errors++;
      },
      onRecovered: () => {
        recovered++;
      },
    },
  };
}

describe("the kube lease source", () => {
  let api: KubeApiServer;
  let src: KubeLeaseSource;
  const own: (OwnNode | null)[] = [];
  const rec = recorder();
  const logs: string[] = [];

  beforeAll(async () => {
    api = await startKubeApiServer({ historyLimit: 50, bookmarkIntervalMs: 60_000 });
    await api.createNodes([
      flannelNode(1),
      flannelNode(2),
      flannelNode(3),
      // not leases:
      makeNode({ name: "fresh", realistic: true }),
      flannelNode(4, { podCIDR: "10.244.4.0/24" }),
      flannelNode(5, { annotations: { [names.backendData]: '{"VNI":1,"VtepMAC":"zz"}' } }),
    ]);
    src = new KubeLeaseSource({
      client: new KubeClient(plain(api.url)),
      nodeName: "node-1",
      names,
      nets: { network, network6: null },
      log: createLogger({ level: "debug", write: (l) => logs.push(l) }),
      watch: { pageSize: 2, backoff: { initialMs: 50, maxMs: 200 } },
      onOwnNode: (n) => own.push(n),
    });
  });
  afterAll(async () => {
    await src?.close();
    await api?.close();
  });

  const puts = (from = 0) =>
    rec.events
      .slice(from)
      .flatMap((e) =>
        e.type === "put" ? [`put ${e.record.key}`] : e.type === "delete" ? [`delete ${e.key}`] : ["resync"],
      );

  test("list: the leases (paged), the skipped counted by reason and logged once", async () => {
    const { records, revision } = await src.list();
    expect(records.map((r) => r.key).sort()).toEqual(["198.19.1.0-24", "198.19.2.0-24", "198.19.3.0-24"]);
    expect(revision).toBe(await api.resourceVersion());
    expect(records[0]!.value).toBe(
      `{"PublicIP":"198.18.0.1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${macFor(1)}"}}`,
    );
    expect(src.skipCounts()).toMatchObject({
      "not-managed": 1,
      "outside-network": 1,
      "bad-vtep-mac": 1,
      "no-podcidr": 0,
    });
    expect(
      src
        .skippedNodes()
        .map((s) => s.name)
        .sort(),
    ).toEqual(["fresh", "node-4", "node-5"]);
    expect(logs.filter((l) => l.includes("node=node-5")).length).toBe(1);
    expect(logs.find((l) => l.includes("node=node-4"))).toContain("level=warn");
    expect(src.ownNode()?.name).toBe("node-1");
    // the list went page by page
    const lists = (await api.requests()).filter((r) => r.method === "GET" && r.path === "/api/v1/nodes");
    expect(lists.length).toBe(3);
    expect(lists.every((r) => r.query.includes("limit=2"))).toBe(true);
  });

  test("watch: a new node, an annotation change, a podCIDR assigned, a node deleted", async () => {
    src.watch((await src.list()).revision, rec.cb);
    await until(async () => (await api.watcherCount()) === 1, "the watch");
    await api.createNode(flannelNode(6));
    await api.annotateNodes(["node-2"], { [names.publicIp]: "198.18.0.22" });
    await api.setPodCidr("fresh", ["198.19.9.0/24"]); // still not managed: nothing
    await api.deleteNode("node-3");
    await until(() => rec.events.length >= 3, "three lease events");
    expect(puts()).toEqual(["put 198.19.6.0-24", "put 198.19.2.0-24", "delete 198.19.3.0-24"]);
    const p2 = rec.events[1]!;
    expect(p2.type === "put" && p2.record.value).toContain('"PublicIP":"198.18.0.22"');
  });

  test("no event for a change that does not touch the lease (labels, status, other annotations)", async () => {
    const n = rec.events.length;
    await api.annotateNodes(["node-1", "node-2"], { "example.com/unrelated": "x" });
    await api.patchNode(
      "node-6",
      { status: { conditions: [{ type: "Ready", status: "False" }] } },
      "strategic",
      "status",
    );
    // a marker change that does produce an event: everything before it has been seen
    await api.annotateNodes(["node-6"], { [names.publicIp]: "198.18.0.66" });
    await until(() => rec.events.length > n, "the marker event");
    expect(puts(n)).toEqual(["put 198.19.6.0-24"]);
  });

  test("a node that turns bad is a delete of its key; fixed, it is a put again", async () => {
    const n = rec.events.length;
    await api.annotateNodes(["node-6"], { [names.backendData]: "not json" });
    await until(() => rec.events.length > n, "the delete");
    expect(puts(n)).toEqual(["delete 198.19.6.0-24"]);
    expect(src.skipCounts()["bad-backend-data"]).toBe(1);
    await api.annotateNodes(["node-6"], { [names.backendData]: `{"VNI":1,"VtepMAC":"${macFor(6)}"}` });
    await until(() => rec.events.length > n + 1, "the put");
    expect(puts(n + 1)).toEqual(["put 198.19.6.0-24"]);
    expect(src.skipCounts()["bad-backend-data"]).toBe(0);
    expect(logs.some((l) => l.includes("Node is a lease again") && l.includes("node=node-6"))).toBe(true);
  });

  test("two nodes with one podCIDR: the second is skipped, and takes over when the first goes", async () => {
    const n = rec.events.length;
    await api.createNode(makeNode({ ...dupOf(6), name: "node-6b" }));
    await api.annotateNodes(["node-1"], { "example.com/marker": "1" });
    await api.annotateNodes(["node-1"], { [names.publicIp]: "198.18.0.11" });
    await until(() => rec.events.length > n, "the marker");
    expect(puts(n)).toEqual(["put 198.19.1.0-24"]);
    expect(src.skipCounts()["duplicate-podcidr"]).toBe(1);
    await api.deleteNode("node-6");
    await until(() => rec.events.length > n + 2, "the delete and the take-over");
    expect(puts(n + 1)).toEqual(["delete 198.19.6.0-24", "put 198.19.6.0-24"]);
    const last = rec.events.at(-1)!;
    expect(last.type === "put" && last.record.value).toContain('"PublicIP":"198.18.0.60"');
    expect(src.skipCounts()["duplicate-podcidr"]).toBe(0);
  });

  test("our own Node's changes are reported", async () => {
    const n = own.length;
    await api.annotateNodes(["node-1"], { "example.com/own": "changed" });
    await until(() => own.length > n, "the own-node callback");
    expect(own.at(-1)?.object.metadata?.annotations).toMatchObject({ "example.com/own": "changed" });
  });

  test("our own Node is kept compact (managedFields, labels, images dropped) and still follows its annotations", async () => {
    const full = (await api.getNode("node-1"))!;
    expect(full.metadata.managedFields).toBeDefined();
    expect(full.status.images).toBeDefined();
    const n = own.length;
    await api.annotateNodes(["node-1"], { [names.publicIp]: "198.18.0.101" });
    await until(() => own.length > n, "the own-node callback");
    const kept = src.ownNode()!;
    expect(own.at(-1)).toBe(kept);
    expect(Object.keys(kept.object.metadata).sort()).toEqual(["annotations", "name", "resourceVersion"]);
    expect(Object.keys(kept.object.status)).toEqual(["conditions"]);
    expect(kept.object.spec).toEqual({ podCIDR: "198.19.1.0/24", podCIDRs: ["198.19.1.0/24"] });
    expect(kept.object.metadata.annotations).toMatchObject({ [names.publicIp]: "198.18.0.101" });
    expect(kept.resourceVersion).toBe(String((await api.getNode("node-1"))!.metadata.resourceVersion));
    // the annotation change is a lease change too
    await until(
      () => rec.events.some((e) => e.type === "put" && e.record.value.includes('"PublicIP":"198.18.0.101"')),
      "the put of node-1's new PublicIP",
    );
  });

  test("bookmarks move the resourceVersion on", async () => {
    await api.createPod("default", "p1", "node-1"); // bumps the shared resourceVersion, no Node event
    await api.bookmark();
    const rv = String(await api.resourceVersion());
    await until(() => src.resourceVersion === rv, "the bookmark's resourceVersion");
  });

  test("an outage: one error, changes made meanwhile arrive after it, one recovery", async () => {
    const n = rec.events.length;
    await api.pause();
    await until(() => rec.errors > 0, "the error report");
    // the cluster goes on while we cannot see it (the store is written directly)
    await api.annotateNodes(["node-2"], { [names.publicIp]: "198.18.0.23" });
    await api.deleteNode("node-1");
    await api.resume();
    await until(() => rec.recovered === 1, "the recovery report");
    await until(() => rec.events.length >= n + 2, "the changes made during the outage");
    expect(puts(n)).toEqual(["put 198.19.2.0-24", "delete 198.19.1.0-24"]);
    expect(logs.filter((l) => l.includes("Kubernetes API failed")).length).toBe(1);
    expect(own.at(-1)).toBeNull();
  });

  test("history compacted (410): one resync with the full set, then the watch goes on", async () => {
    const n = rec.events.length;
    await api.createNode(flannelNode(7));
    await until(() => rec.events.length > n, "node-7's put");
    await api.compact(); // ends the watch; its resourceVersion is now too old
    await api.createNode(flannelNode(8)); // made before the client re-watches
    await until(() => rec.events.some((e, i) => i > n && e.type === "resync"), "the resync");
    const resync = rec.events.findLast((e) => e.type === "resync")!;
    expect(resync.type === "resync" && resync.records.map((r) => r.key).sort()).toEqual([
      "198.19.2.0-24",
      "198.19.6.0-24",
      "198.19.7.0-24",
      "198.19.8.0-24",
    ]);
    const before = rec.events.length;
    await api.createNode(flannelNode(9));
    await until(() => rec.events.length > before, "an event after the resync");
    expect(puts(before)).toEqual(["put 198.19.9.0-24"]);
  });

  test("publish: our annotations on nodes/NAME/status, only what differs; nothing when all equal", async () => {
    await api.createNode(makeNode({ name: "node-1", podCIDR: "198.19.1.0/24" }));
    await api.clearRequests();
    const attrs = { publicIp: "198.18.0.1", backendType: "vxlan", vxlan: { VNI: 1, VtepMAC: macFor(1) } };
    const first = await src.publish(attrs);
    expect(first.node.object.metadata?.annotations).toEqual(
      flanneldVxlanAnnotations("198.18.0.1", macFor(1)),
    );
    expect(JSON.parse(first.patch!).metadata.annotations).toEqual(
      flanneldVxlanAnnotations("198.18.0.1", macFor(1)),
    );
    expect((await api.getNode("node-1"))!.metadata.annotations).toEqual(
      flanneldVxlanAnnotations("198.18.0.1", macFor(1)),
    );
    expect((await src.publish(attrs)).patch).toBeNull();
    await api.annotateNodes(["node-1"], { [names.publicIpOverwrite]: "203.0.113.1" });
    expect((await src.publish(attrs)).patch).toBe(
      '{"metadata":{"annotations":{"flannel.alpha.coreos.com/public-ip":"203.0.113.1"}}}',
    );
    const patches = (await api.requests()).filter((r) => r.method === "PATCH");
    expect(patches.map((r) => [r.path, r.contentType, r.status])).toEqual([
      ["/api/v1/nodes/node-1/status", "application/strategic-merge-patch+json", 200],
      ["/api/v1/nodes/node-1/status", "application/strategic-merge-patch+json", 200],
    ]);
  });

  test("markNetworkUp: NetworkUnavailable=False once, then nothing", async () => {
    expect(await src.markNetworkUp()).not.toBeNull();
    const c = (await api.getNode("node-1"))!.status.conditions.find(
      (x: { type: string }) => x.type === "NetworkUnavailable",
    );
    expect(c).toMatchObject({
      status: "False",
      reason: "FlannelIsUp",
      message: "Flannel is running on this node",
    });
    expect(await src.markNetworkUp()).toBeNull();
  });
});

function dupOf(i: number) {
  return {
    name: "x",
    podCIDR: `198.19.${i}.0/24`,
    annotations: flanneldVxlanAnnotations(`198.18.0.${i}0`, macFor(i * 10)),
  };
}

describe("the Node watch loop", () => {
  test("a watch that goes quiet is abandoned and re-opened (a half-open connection)", async () => {
    const api = await startKubeApiServer({ bookmarkIntervalMs: 600_000 });
    try {
      await api.createNode(flannelNode(1));
      const client = new KubeClient(plain(api.url));
      let errors = 0;
      let recovered = 0;
      const seen: string[] = [];
      const sink = {
        listStart() {},
        listPage() {},
        listDone() {},
        events: (b: readonly { type: string; object: { metadata: { name: string } } }[]) => {
          for (const e of b) seen.push(`${e.type} ${e.object.metadata.name}`);
        },
        onError: () => errors++,
        onRecovered: () => recovered++,
      };
      const rv = await listNodesInto(client, sink);
      const h = startNodeWatch(client, sink, {
        log: silentLogger,
        resourceVersion: rv,
        idleTimeoutMs: 300,
        backoff: { initialMs: 20, maxMs: 50 },
      });
      await until(() => errors >= 1 && recovered >= 1, "an idle abort and a recovery");
      await api.createNode(flannelNode(2));
      await until(() => seen.includes("ADDED node-2"), "the event after re-opening");
      h.stop();
      await h.done;
      client.close();
    } finally {
      await api.close();
    }
  });

  test("a list whose continue token expired between pages starts over", async () => {
    const api = await startKubeApiServer();
    try {
      for (let i = 1; i <= 4; i++) await api.createNode(flannelNode(i));
      const client = new KubeClient(plain(api.url));
      let starts = 0;
      let got: string[] = [];
      let compacted = false;
      const rv = await listNodesInto(
        client,
        {
          listStart: () => {
            starts++;
            got = [];
          },
          listPage: (items) => {
            got.push(...items.map((n) => (n as { metadata: { name: string } }).metadata.name));
            if (!compacted) {
              compacted = true;
              void api.compact();
            }
          },
          listDone() {},
        },
        { pageSize: 2 },
      );
      expect(starts).toBe(2);
      expect(got).toEqual(["node-1", "node-2", "node-3", "node-4"]);
      expect(Number(rv)).toBe(await api.resourceVersion());
      client.close();
    } finally {
      await api.close();
    }
  });
});
