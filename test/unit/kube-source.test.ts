/**
 * The kube lease source (src/lease/kube-source.ts) against the stand-in API server on
 * loopback: the network config with SubnetLen from our podCIDR, waiting (not failing)
 * while our Node has no podCIDR, acquiring = flannel's annotations byte for byte and the
 * NetworkUnavailable condition (each patched only when it differs), the overwrite and
 * node-public-ip annotations, and Nodes of any prefix length as leases.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatIp4, parseIp4 } from "../../src/config/cidr.ts";
import type { KubeOptions } from "../../src/config/options.ts";
import { KubeClient } from "../../src/kube/client.ts";
import { resolveConnection } from "../../src/kube/connection.ts";
import { KubeSource } from "../../src/lease/kube-source.ts";
import { decodeLeaseRecord } from "../../src/lease/lease.ts";
import { LeaseRefusedError, NetworkConfigError, SourceWaitingError } from "../../src/lease/source.ts";
import { silentLogger } from "../../src/log.ts";
import { type KubeApiServer, startKubeApiServer } from "../helpers/kube-apiserver.ts";
import { flanneldVxlanAnnotations, macFor, makeNode } from "../helpers/kube-nodes.ts";

const KUBE: KubeOptions = {
  apiUrl: null,
  kubeconfigFile: null,
  annotationPrefix: "flannel.alpha.coreos.com",
  setNodeNetworkUnavailable: true,
};
const P = "flannel.alpha.coreos.com";
const ATTRS = {
  publicIp: parseIp4("198.18.0.1")!,
  backendType: "vxlan",
  vxlan: { VNI: 1, VtepMAC: "0e:7a:00:00:00:01" },
};
const MEMORY = { previous: null, owned: new Set<string>() };

const failure = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error("expected the call to fail");
    },
    (e: unknown) => e as Error,
  );

let api: KubeApiServer;
let dir: string;
let netConf: string;
let src: KubeSource;

function source(o: Partial<KubeOptions> = {}, node = "node-1"): KubeSource {
  return new KubeSource({
    kube: { ...KUBE, ...o },
    nodeName: node,
    netConfigPath: netConf,
    log: silentLogger,
    client: new KubeClient(resolveConnection({ apiUrl: api.url }, {})),
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "tartan-kube-source-"));
  netConf = join(dir, "net-conf.json");
  writeFileSync(netConf, JSON.stringify({ Network: "198.19.0.0/16", Backend: { Type: "vxlan" } }));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
beforeEach(async () => {
  api = await startKubeApiServer();
  src = source();
});
afterEach(async () => {
  await src.close();
  await api.close();
});

describe("network config", () => {
  test("no such Node, then a Node without a podCIDR: waiting, with the one line naming --allocate-node-cidrs", async () => {
    const missing = await failure(src.networkConfig());
    expect(missing).toBeInstanceOf(SourceWaitingError);
    expect(missing.message).toContain("the API has no Node named node-1");
    await api.createNode(makeNode({ name: "node-1" }));
    const waiting = await failure(src.networkConfig());
    expect(waiting).toBeInstanceOf(SourceWaitingError);
    expect(waiting.message).toBe(
      "Node node-1 has no podCIDR yet; waiting for kube-controller-manager to assign one (it does only when started with --allocate-node-cidrs=true --cluster-cidr=198.19.0.0/16; kubeadm: init --pod-network-cidr)",
    );
    await api.setPodCidr("node-1", ["198.19.1.0/24"]);
    const cfg = await src.networkConfig();
    expect(cfg.subnetLen).toBe(24);
    expect(cfg.podCidrSubnets).toBe(true);
  });

  test("SubnetLen is the podCIDR's length (kube-controller-manager's --node-cidr-mask-size), not net-conf's", async () => {
    await api.createNode(makeNode({ name: "node-1", podCIDR: "198.19.1.128/25" }));
    const cfg = await src.networkConfig();
    expect([cfg.subnetLen, formatIp4(cfg.network.ip), cfg.network.len]).toEqual([25, "198.19.0.0", 16]);
  });

  test("a podCIDR outside Network, an IPv6-only Node, a broken net-conf.json: final errors naming the fix", async () => {
    await api.createNode(makeNode({ name: "node-1", podCIDR: "10.244.1.0/24" }));
    const outside = await failure(src.networkConfig());
    expect(outside).toBeInstanceOf(NetworkConfigError);
    expect(outside.message).toBe(
      `Node node-1's podCIDR 10.244.1.0/24 is not inside the network 198.19.0.0/16 (Network of ${netConf}): set Network to the cluster CIDR, kube-controller-manager's --cluster-cidr`,
    );
    await api.createNode(makeNode({ name: "node-6", podCIDR: "fd00:19::/64" }));
    const v6 = await failure(source({}, "node-6").networkConfig());
    expect(v6).toBeInstanceOf(NetworkConfigError);
    expect(v6.message).toContain("has no IPv4 podCIDR (only fd00:19::/64)");
    writeFileSync(join(dir, "bad.json"), "{");
    const bad = new KubeSource({
      kube: KUBE,
      nodeName: "node-1",
      netConfigPath: join(dir, "bad.json"),
      log: silentLogger,
      client: new KubeClient(resolveConnection({ apiUrl: api.url }, {})),
    });
    expect(await failure(bad.networkConfig())).toBeInstanceOf(NetworkConfigError);
    await bad.close();
  });

  test("an unreachable API is a transient error (the agent retries and says degraded)", async () => {
    await api.pause();
    const e = await failure(src.networkConfig());
    expect(e).not.toBeInstanceOf(SourceWaitingError);
    expect(e).not.toBeInstanceOf(NetworkConfigError);
    await api.resume();
  });
});

describe("acquire", () => {
  test("flannel's annotations byte for byte, then NetworkUnavailable=False; a second acquire patches nothing", async () => {
    await api.createNode(makeNode({ name: "node-1", podCIDR: "198.19.1.0/24" }));
    const config = await src.networkConfig();
    await api.clearRequests();
    const lease = await src.acquire({ config, attrs: ATTRS, memory: MEMORY });
    expect([lease.key, lease.expiresAt, formatIp4(lease.attrs.publicIp)]).toEqual([
      "198.19.1.0-24",
      null,
      "198.18.0.1",
    ]);
    const node = (await api.getNode("node-1"))!;
    // what a flanneld vxlan node writes, key for key and byte for byte
    expect(node.metadata.annotations).toEqual(flanneldVxlanAnnotations("198.18.0.1", "0e:7a:00:00:00:01"));
    expect(node.metadata.annotations[`${P}/backend-data`]).toBe('{"VNI":1,"VtepMAC":"0e:7a:00:00:00:01"}');
    const cond = node.status.conditions.find((c: { type: string }) => c.type === "NetworkUnavailable");
    expect(cond).toMatchObject({ status: "False", reason: "FlannelIsUp" });
    const patches = (await api.requests()).filter((r) => r.method === "PATCH");
    expect(patches.map((r) => r.path)).toEqual([
      "/api/v1/nodes/node-1/status",
      "/api/v1/nodes/node-1/status",
    ]);
    await api.clearRequests();
    await src.acquire({ config, attrs: ATTRS, memory: MEMORY });
    expect((await api.requests()).filter((r) => r.method === "PATCH")).toEqual([]);
  });

  test("host-gw publishes backend-data null; --set-node-network-unavailable=false leaves the condition alone", async () => {
    src = source({ setNodeNetworkUnavailable: false });
    await api.createNode(makeNode({ name: "node-1", podCIDR: "198.19.1.0/24" }));
    const config = await src.networkConfig();
    await src.acquire({ config, attrs: { ...ATTRS, backendType: "host-gw", vxlan: null }, memory: MEMORY });
    const node = (await api.getNode("node-1"))!;
    expect(node.metadata.annotations).toEqual({
      [`${P}/backend-data`]: "null",
      [`${P}/backend-type`]: "host-gw",
      [`${P}/kube-subnet-manager`]: "true",
      [`${P}/public-ip`]: "198.18.0.1",
    });
    expect(node.status.conditions.map((c: { type: string }) => c.type)).not.toContain("NetworkUnavailable");
  });

  test("public-ip-overwrite: published and carried by our lease; a bad one is refused", async () => {
    await api.createNode(
      makeNode({
        name: "node-1",
        podCIDR: "198.19.1.0/24",
        annotations: { [`${P}/public-ip-overwrite`]: "198.18.9.9" },
      }),
    );
    const config = await src.networkConfig();
    const lease = await src.acquire({ config, attrs: ATTRS, memory: MEMORY });
    expect(formatIp4(lease.attrs.publicIp)).toBe("198.18.9.9");
    expect((await api.getNode("node-1"))!.metadata.annotations[`${P}/public-ip`]).toBe("198.18.9.9");
    const { records } = await src.list();
    const own = decodeLeaseRecord(records.find((r) => r.key === lease.key)!, config);
    expect(own.ok && formatIp4(own.lease.attrs.publicIp)).toBe("198.18.9.9");
    await api.annotateNodes(["node-1"], { [`${P}/public-ip-overwrite`]: "nine" });
    const e = await failure(src.acquire({ config, attrs: ATTRS, memory: MEMORY }));
    expect(e).toBeInstanceOf(LeaseRefusedError);
    expect(e.message).toContain(
      `annotation ${P}/public-ip-overwrite="nine" on Node node-1 is not an IPv4 address`,
    );
  });

  test("a podCIDR cleared after the start: waiting again, not a failure", async () => {
    await api.createNode(makeNode({ name: "node-1", podCIDR: "198.19.1.0/24" }));
    const config = await src.networkConfig();
    await api.setPodCidr("node-1", null);
    expect(await failure(src.acquire({ config, attrs: ATTRS, memory: MEMORY }))).toBeInstanceOf(
      SourceWaitingError,
    );
  });
});

describe("node-public-ip (flannel's GetStoredPublicIP)", () => {
  test("absent: null; set: the address; not an address: refused; API down: null (go on without it)", async () => {
    await api.createNode(makeNode({ name: "node-1", podCIDR: "198.19.1.0/24" }));
    expect(await src.storedPublicIp()).toBeNull();
    await api.annotateNodes(["node-1"], { [`${P}/node-public-ip`]: "198.18.7.7" });
    expect(formatIp4((await src.storedPublicIp())!)).toBe("198.18.7.7");
    await api.annotateNodes(["node-1"], { [`${P}/node-public-ip`]: "x" });
    expect(await failure(src.storedPublicIp())).toBeInstanceOf(LeaseRefusedError);
    await api.pause();
    expect(await src.storedPublicIp()).toBeNull();
    await api.resume();
  });
});

describe("peers", () => {
  test("Nodes of any prefix length inside Network are leases; the rest skipped and counted by reason", async () => {
    await api.createNode(makeNode({ name: "node-1", podCIDR: "198.19.1.0/24" }));
    const ann = (i: number) => flanneldVxlanAnnotations(`198.18.0.${i}`, macFor(i));
    await api.createNode(makeNode({ name: "node-2", podCIDR: "198.19.2.0/25", annotations: ann(2) }));
    await api.createNode(makeNode({ name: "node-3", podCIDR: "10.0.3.0/24", annotations: ann(3) }));
    await api.createNode(
      makeNode({
        name: "node-4",
        podCIDR: "198.19.4.0/24",
        annotations: { ...ann(4), [`${P}/backend-data`]: "{not json" },
      }),
    );
    const config = await src.networkConfig();
    await src.acquire({ config, attrs: ATTRS, memory: MEMORY });
    const { records } = await src.list();
    const decoded = records.map((r) => decodeLeaseRecord(r, config));
    expect(decoded.map((d) => d.ok && d.lease.key).sort()).toEqual(["198.19.1.0-24", "198.19.2.0-25"]);
    expect(src.skippedByReason()).toMatchObject({ "outside-network": 1, "bad-backend-data": 1 });
  });
});
