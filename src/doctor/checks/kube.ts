/**
 * Doctor's checks of a --kube-subnet-mgr node's standing in the Kubernetes API: our Node
 * has a podCIDR inside the network (it is the node's subnet), carries flannel's
 * annotations as this node announces itself (what every other node programs), and its
 * NetworkUnavailable condition is False (else the scheduler keeps pods off it). Only
 * judged in that mode. Pure.
 */
import { containsCidr, formatCidr, formatIp4, parseCidr, parseIp4 } from "../../config/cidr.ts";
import type { BackendName } from "../../config/network.ts";
import { desiredAnnotations, type PublishedAttrs } from "../../kube/annotations.ts";
import type { Facts, KubeFacts } from "../facts.ts";
import { type Check, cannot, derive, firstFew, ok } from "./common.ts";

const RESTART_KUBE =
  "restart the agent (kubectl -n <namespace> delete pod <its pod>): at start it publishes its annotations and the condition";

/** The kube facts, or the check that says why they are not there. */
function kubeOr(f: Facts, id: string, why: string): KubeFacts | Check {
  if (!f.kube) return ok(id, "not a --kube-subnet-mgr node", why);
  if (!f.kube.ok)
    return cannot(
      id,
      `cannot read our Node from the Kubernetes API: ${f.kube.error}`,
      why,
      "check --kubeconfig-file / --kube-api-url, or the pod's service account and its RBAC (nodes get/list/watch)",
    );
  return f.kube.value;
}

/** Our Node has a podCIDR, IPv4, inside Network. */
export function checkKubePodCidr(f: Facts): Check {
  const id = "kube-podcidr";
  const why =
    "with --kube-subnet-mgr the node's pod subnet is its Node's podCIDR; without one the agent waits and no pod starts here";
  const k = kubeOr(f, id, why);
  if ("status" in k) return k;
  if (!k.node)
    return {
      id,
      status: "problem",
      finding: `the API has no Node named ${k.nodeName}`,
      why,
      fix: "give the agent this node's Node name (NODE_NAME from the downward API's spec.nodeName, or --node-name); kubectl get nodes lists them",
      fixable: false,
    };
  const network = f.config.ok ? f.config.value.network : null;
  const net = network ? formatCidr(network) : "the cluster CIDR";
  if (k.node.podCidrs.length === 0)
    return {
      id,
      status: "problem",
      finding: `Node ${k.nodeName} has no podCIDR`,
      why,
      fix: `start kube-controller-manager with --allocate-node-cidrs=true --cluster-cidr=${net} (kubeadm: init --pod-network-cidr=${net})`,
      fixable: false,
    };
  const v4 = k.node.podCidrs.map((c) => parseCidr(c, false)).find((c) => c !== null) ?? null;
  if (!v4)
    return {
      id,
      status: "problem",
      finding: `Node ${k.nodeName} has no IPv4 podCIDR (${k.node.podCidrs.join(", ")})`,
      why,
      fix: "Tartan carries IPv4: give the cluster an IPv4 --cluster-cidr",
      fixable: false,
    };
  const text = formatCidr(v4);
  if (network && !containsCidr(network, v4))
    return {
      id,
      status: "problem",
      finding: `Node ${k.nodeName}'s podCIDR ${text} is not inside Network ${net}`,
      why,
      fix: "set Network in net-conf.json to kube-controller-manager's --cluster-cidr",
      fixable: false,
    };
  return ok(id, `Node ${k.nodeName} has podCIDR ${text}${network ? `, inside ${net}` : ""}`, why);
}

/** The wire type a backend announces (ebpf-vxlan speaks vxlan). */
function wireType(b: BackendName): string {
  return b === "ebpf-vxlan" ? "vxlan" : b;
}

/** What this node announces, as far as the facts tell; null parts cannot be judged. */
function announced(f: Facts, k: KubeFacts): { attrs: PublishedAttrs | null; unknown: string | null } {
  const d = derive(f);
  if (!d.backend) return { attrs: null, unknown: "the backend is unknown" };
  const stored = k.node?.annotations[k.names.nodePublicIp];
  const publicIp =
    stored && parseIp4(stored) !== null
      ? stored
      : f.underlay.ok
        ? formatIp4(f.underlay.value.publicIp)
        : null;
  if (publicIp === null)
    return { attrs: null, unknown: "this node's public IP is unknown (see the underlay)" };
  const type = wireType(d.backend);
  if (type !== "vxlan") return { attrs: { publicIp, backendType: type, vxlan: null }, unknown: null };
  const dev = d.overlay && f.links.ok ? f.links.value.find((l) => l.name === d.overlay) : undefined;
  if (!dev)
    return { attrs: null, unknown: `the overlay device ${d.overlay ?? "?"} is missing (see the datapath)` };
  return { attrs: { publicIp, backendType: type, vxlan: { VNI: d.vni, VtepMAC: dev.mac } }, unknown: null };
}

/** Our Node carries flannel's annotations, as this node announces itself. */
export function checkKubeAnnotations(f: Facts): Check {
  const id = "kube-annotations";
  const why =
    "every other node (Tartan or flanneld) programs this node from its annotations: a missing or stale one makes this node's pods unreachable";
  const k = kubeOr(f, id, why);
  if ("status" in k) return k;
  if (!k.node) return cannot(id, `cannot check: the API has no Node named ${k.nodeName}`, why);
  const current = k.node.annotations;
  const { attrs, unknown } = announced(f, k);
  if (!attrs) return cannot(id, `cannot tell what this node announces: ${unknown}`, why);
  const want = desiredAnnotations(k.names, attrs, current);
  const problems = Object.keys(want)
    .sort()
    .filter((key) => current[key] !== want[key])
    .map((key) =>
      current[key] === undefined
        ? `${key} is missing (want ${want[key]})`
        : `${key} is ${current[key]}, this node announces ${want[key]}`,
    );
  if (problems.length)
    return {
      id,
      status: "problem",
      finding: `Node ${k.nodeName}: ${firstFew(problems, 2)}`,
      why,
      fix: RESTART_KUBE,
      fixable: false,
      details: problems,
    };
  return ok(
    id,
    `Node ${k.nodeName} announces ${want[k.names.backendType]} at ${want[k.names.publicIp] ?? "-"}${attrs.vxlan ? ` (VtepMAC ${attrs.vxlan.VtepMAC})` : ""}`,
    why,
  );
}

/** Our Node's NetworkUnavailable condition is False. */
export function checkKubeNetworkUnavailable(f: Facts): Check {
  const id = "kube-network-unavailable";
  const why =
    "while a Node's NetworkUnavailable condition is not False it has the node.kubernetes.io/network-unavailable taint, and the scheduler keeps pods off it";
  const k = kubeOr(f, id, why);
  if ("status" in k) return k;
  if (!k.node) return cannot(id, `cannot check: the API has no Node named ${k.nodeName}`, why);
  const c = k.node.networkUnavailable;
  if (!k.setNodeNetworkUnavailable)
    return ok(
      id,
      `left alone by the agent (--set-node-network-unavailable=false); it is ${c ? c.status : "not set"}`,
      why,
    );
  if (!c)
    return cannot(
      id,
      `Node ${k.nodeName} has no NetworkUnavailable condition yet: the agent sets it once it holds its subnet`,
      why,
      RESTART_KUBE,
    );
  if (c.status !== "False")
    return {
      id,
      status: "problem",
      finding: `Node ${k.nodeName}'s NetworkUnavailable is ${c.status} (${c.reason || "no reason"}${c.message ? `: ${c.message}` : ""})`,
      why,
      fix: RESTART_KUBE,
      fixable: false,
    };
  return ok(id, `Node ${k.nodeName}'s NetworkUnavailable is False (${c.reason})`, why);
}
