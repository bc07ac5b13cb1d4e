/**
 * Doctor's kube checks (src/doctor/checks/kube.ts) from facts: the healthy two-node
 * fixture as a --kube-subnet-mgr node, then one fact broken at a time — no Node, no
 * podCIDR, one outside the network, an annotation missing or stale, the overwrite and
 * node-public-ip annotations honoured, NetworkUnavailable True or absent.
 */
import { describe, expect, test } from "bun:test";
import {
  checkKubeAnnotations,
  checkKubeNetworkUnavailable,
  checkKubePodCidr,
  checkLease,
  judge,
} from "../../src/doctor/checks.ts";
import { type Facts, fact, factError, type KubeFacts } from "../../src/doctor/facts.ts";
import { annotationNames } from "../../src/kube/annotations.ts";
import { healthy, MAC1 } from "./doctor-fixture.ts";

const names = annotationNames();
const P = "flannel.alpha.coreos.com";
const ANNOTATIONS = {
  [`${P}/backend-data`]: `{"VNI":1,"VtepMAC":"${MAC1}"}`,
  [`${P}/backend-type`]: "vxlan",
  [`${P}/kube-subnet-manager`]: "true",
  [`${P}/public-ip`]: "198.18.0.1",
};

function kubeNode(o: {
  node?: KubeFacts["node"] | "none";
  annotations?: Record<string, string | undefined>;
  podCidrs?: string[];
  condition?: KubeFacts["node"] extends infer N
    ? N extends { networkUnavailable: infer C }
      ? C
      : never
    : never;
  manage?: boolean;
}): Facts {
  const annotations: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...ANNOTATIONS, ...o.annotations }))
    if (v !== undefined) annotations[k] = v;
  const node: KubeFacts["node"] =
    o.node === "none"
      ? null
      : (o.node ?? {
          podCidrs: o.podCidrs ?? ["198.19.1.0/24"],
          annotations,
          networkUnavailable:
            o.condition === undefined
              ? { status: "False", reason: "FlannelIsUp", message: "Flannel is running on this node" }
              : o.condition,
        });
  const base = healthy();
  // Nodes' leases never expire
  const leases = base.registry.ok ? base.registry.value.leases.map((l) => ({ ...l, expiresAt: null })) : [];
  return {
    ...base,
    registry: fact({ description: "kubernetes:https://198.18.254.2:6443 (Node node1)", leases, invalid: [] }),
    ownLease: leases[0]!,
    kube: fact({
      description: "kubernetes:https://198.18.254.2:6443 (Node node1)",
      nodeName: "node1",
      names,
      setNodeNetworkUnavailable: o.manage ?? true,
      node,
      skipped: [],
    }),
  };
}

const KUBE_IDS = ["kube-podcidr", "kube-annotations", "kube-network-unavailable"];

describe("doctor's kube checks", () => {
  test("a healthy --kube-subnet-mgr node: every check ok, the kube ones after the registry's", () => {
    const checks = judge(kubeNode({}));
    expect(checks.filter((c) => c.status !== "ok")).toEqual([]);
    const ids = checks.map((c) => c.id);
    expect(ids.slice(1, 5)).toEqual(["registry", ...KUBE_IDS]);
    expect(checkLease(kubeNode({})).finding).toContain("is Node node1's podCIDR");
  });

  test("a registry node is not judged by them", () => {
    const ids = judge(healthy()).map((c) => c.id);
    for (const id of KUBE_IDS) expect(ids).not.toContain(id);
  });

  test("the API unreadable: a warning naming the credentials to check", () => {
    const c = checkKubePodCidr({ ...healthy(), kube: factError("GET /api/v1/nodes failed") });
    expect(c.status).toBe("warning");
    expect(c.finding).toContain("GET /api/v1/nodes failed");
    expect(c.fix).toContain("--kubeconfig-file");
  });

  test("podCIDR: no Node, none assigned, outside Network, IPv6 only — each a problem naming the fix", () => {
    expect(checkKubePodCidr(kubeNode({ node: "none" }))).toMatchObject({
      status: "problem",
      finding: "the API has no Node named node1",
    });
    const none = checkKubePodCidr(kubeNode({ podCidrs: [] }));
    expect(none).toMatchObject({ status: "problem", finding: "Node node1 has no podCIDR" });
    expect(none.fix).toBe(
      "start kube-controller-manager with --allocate-node-cidrs=true --cluster-cidr=198.19.0.0/16 (kubeadm: init --pod-network-cidr=198.19.0.0/16)",
    );
    expect(checkKubePodCidr(kubeNode({ podCidrs: ["10.244.1.0/24"] })).finding).toBe(
      "Node node1's podCIDR 10.244.1.0/24 is not inside Network 198.19.0.0/16",
    );
    expect(checkKubePodCidr(kubeNode({ podCidrs: ["fd00:19::/64"] })).finding).toContain("no IPv4 podCIDR");
    expect(checkKubePodCidr(kubeNode({})).finding).toBe(
      "Node node1 has podCIDR 198.19.1.0/24, inside 198.19.0.0/16",
    );
  });

  test("annotations: a missing one and a stale VtepMAC are named with what this node announces", () => {
    const c = checkKubeAnnotations(
      kubeNode({
        annotations: {
          [`${P}/public-ip`]: undefined,
          [`${P}/backend-data`]: '{"VNI":1,"VtepMAC":"0e:00:00:00:00:99"}',
        },
      }),
    );
    expect(c.status).toBe("problem");
    expect(c.details).toEqual([
      `${P}/backend-data is {"VNI":1,"VtepMAC":"0e:00:00:00:00:99"}, this node announces {"VNI":1,"VtepMAC":"${MAC1}"}`,
      `${P}/public-ip is missing (want 198.18.0.1)`,
    ]);
    expect(c.fix).toContain("restart the agent");
  });

  test("annotations: public-ip-overwrite and node-public-ip are what the agent publishes, so they are current", () => {
    const over = kubeNode({
      annotations: { [`${P}/public-ip-overwrite`]: "203.0.113.9", [`${P}/public-ip`]: "203.0.113.9" },
    });
    expect(checkKubeAnnotations(over).status).toBe("ok");
    const stored = kubeNode({
      annotations: { [`${P}/node-public-ip`]: "198.18.0.77", [`${P}/public-ip`]: "198.18.0.77" },
    });
    expect(checkKubeAnnotations(stored).status).toBe("ok");
    const ignored = kubeNode({ annotations: { [`${P}/public-ip-overwrite`]: "203.0.113.9" } });
    expect(checkKubeAnnotations(ignored).details).toEqual([
      `${P}/public-ip is 198.18.0.1, this node announces 203.0.113.9`,
    ]);
  });

  test("annotations: the overlay device missing means cannot tell, not a problem", () => {
    const f = kubeNode({});
    const links = f.links.ok ? f.links.value.filter((l) => l.name !== "flannel.1") : [];
    const c = checkKubeAnnotations({ ...f, links: fact(links) });
    expect(c.status).toBe("warning");
    expect(c.finding).toContain("flannel.1 is missing");
  });

  test("NetworkUnavailable: True is a problem, absent a warning, unmanaged ok whatever it says", () => {
    const on = checkKubeNetworkUnavailable(
      kubeNode({
        condition: { status: "True", reason: "NoRouteCreated", message: "RouteController failed" },
      }),
    );
    expect(on).toMatchObject({
      status: "problem",
      finding: "Node node1's NetworkUnavailable is True (NoRouteCreated: RouteController failed)",
    });
    expect(checkKubeNetworkUnavailable(kubeNode({ condition: null })).status).toBe("warning");
    expect(
      checkKubeNetworkUnavailable(
        kubeNode({ manage: false, condition: { status: "True", reason: "x", message: "" } }),
      ).status,
    ).toBe("ok");
    expect(checkKubeNetworkUnavailable(kubeNode({})).finding).toBe(
      "Node node1's NetworkUnavailable is False (FlannelIsUp)",
    );
  });
});
