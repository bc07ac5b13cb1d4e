/**
 * The stand-in API server where the kube subnet manager's suites need it: its own Bun
 * process in its own namespace on the test underlay (HTTPS, a throwaway CA, a bearer
 * token), driven over its control socket, and reached from a node namespace by the real
 * kubectl and by Tartan's lease source (bench/kube-client/probe-tartan.ts, the same
 * code the agent will run), through an outage and back; everything removed afterwards.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import {
  type NamespacedKubeApi,
  startKubeApiServerInNamespace,
  writeKubeconfig,
} from "../helpers/kube-apiserver.ts";
import { flanneldVxlanAnnotations, macFor, makeNode } from "../helpers/kube-nodes.ts";
import { Lab, type LabProcess, run, until } from "../helpers/netns.ts";

const ROOT = resolve(import.meta.dir, "../..");
const API_IP = "198.18.254.2";
const kubectl = Bun.which("kubectl");

describe("stand-in API server in a namespace on the underlay", () => {
  const lab = new Lab("kapi");
  let api: NamespacedKubeApi;
  let node: { ns: string; ip: string };
  let kubeconfig: string;
  let probe: LabProcess;

  beforeAll(async () => {
    node = await lab.addNode();
    api = await startKubeApiServerInNamespace(lab, { ip: API_IP, tls: true, token: "e2e-token" });
    kubeconfig = join(lab.dir, "kubeconfig");
    writeKubeconfig(kubeconfig, api, "e2e-token");
    for (const i of [1, 2])
      await api.createNode(
        makeNode({
          name: `node-${i}`,
          podCIDR: `198.19.${i}.0/24`,
          internalIp: `198.18.0.${i}`,
          annotations: flanneldVxlanAnnotations(`198.18.0.${i}`, macFor(i)),
        }),
      );
  }, 60_000);

  afterAll(async () => {
    const pid = api?.process.proc.pid;
    const ns = api?.ns;
    await api?.close();
    await lab.cleanup();
    // nothing left: the process and the namespace are gone
    if (pid) expect(existsSync(`/proc/${pid}`)).toBe(false);
    if (ns) expect((await run(["ip", "netns", "list"])).stdout).not.toContain(ns);
  });

  test("it listens on the underlay only: a node reaches it, the root namespace does not see the address", async () => {
    const r = await lab.exec(node.ns, [
      "curl",
      "-s",
      "--cacert",
      api.pki!.caFile,
      "-H",
      "Authorization: Bearer e2e-token",
      `${api.url}/version`,
    ]);
    expect(JSON.parse(r.stdout).gitVersion).toContain("standin");
    const anon = await lab.exec(node.ns, [
      "curl",
      "-s",
      "--cacert",
      api.pki!.caFile,
      `${api.url}/api/v1/nodes`,
    ]);
    expect(JSON.parse(anon.stdout)).toMatchObject({ kind: "Status", code: 401 });
    expect((await run(["ip", "-o", "addr", "show"])).stdout).not.toContain(API_IP);
  });

  test.skipIf(!kubectl)(
    "the real kubectl, run in the node's namespace, lists and annotates Nodes",
    async () => {
      const k = (...args: string[]) =>
        lab.must(node.ns, [
          kubectl!,
          `--kubeconfig=${kubeconfig}`,
          `--cache-dir=${join(lab.dir, "kcache")}`,
          ...args,
        ]);
      expect(await k("get", "nodes", "-o", "name")).toBe("node/node-1\nnode/node-2\n");
      await k("annotate", "node", "node-2", "example.com/from-node=yes");
      expect((await api.getNode("node-2"))!.metadata.annotations["example.com/from-node"]).toBe("yes");
    },
  );

  test("Tartan's lease source, in the node's namespace: list, watch, an outage and back", async () => {
    probe = lab.spawn(node.ns, "probe", [process.execPath, join(ROOT, "bench/kube-client/probe-tartan.ts")], {
      KUBECONFIG: kubeconfig,
      NODE_NAME: "node-1",
    });
    const lines = async () =>
      (await lab.log(probe))
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as { synced?: number; leases?: number; events?: number; error?: string });
    const last = async (key: "events" | "error") =>
      (await lines()).filter((l) => l[key] !== undefined).at(-1)?.[key];
    expect(await until(async () => (await lines()).find((l) => l.synced !== undefined), "the list")).toEqual({
      synced: 2,
      leases: 2,
    });
    await until(async () => (await api.watcherCount()) === 1, "the watch");
    await api.createNode(
      makeNode({
        name: "node-3",
        podCIDR: "198.19.3.0/24",
        annotations: flanneldVxlanAnnotations("198.18.0.3", macFor(3)),
      }),
    );
    await until(async () => (await last("events")) === 1, "the new node's lease event");
    await api.pause();
    await until(async () => (await last("error")) !== undefined, "the probe to report the outage");
    await api.deleteNode("node-2"); // while the API is unreachable
    await api.resume();
    await until(async () => (await last("events")) === 2, "the delete made during the outage", 20_000);
  }, 60_000);
});
