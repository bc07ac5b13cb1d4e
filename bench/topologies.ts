/**
 * The benchmark's two-node setups, one pod per node, all on the same kind of underlay
 * (veth into a bridge namespace, MTU 1500):
 *   reference-vxlan — iproute2 only, exactly flanneld's vxlan device, onlink routes,
 *                     neighbour and FDB entries; no Tartan code runs
 *   host-gw         — Tartan's host-gw backend: plain routing, no encapsulation (the ceiling)
 *   tartan-vxlan    — Tartan's kernel vxlan backend
 *   tartan-ebpf     — Tartan's ebpf-vxlan backend (TC encap, TC decap + redirect_peer)
 */
import { Cluster } from "../test/helpers/cluster.ts";
import { Lab } from "../test/helpers/netns.ts";
import type { Pod } from "../test/helpers/pods.ts";

export const CONFIGS = ["reference-vxlan", "host-gw", "tartan-vxlan", "tartan-ebpf"] as const;
export type ConfigName = (typeof CONFIGS)[number];

export interface Topology {
  readonly name: ConfigName;
  readonly client: Pod;
  readonly server: Pod;
  readonly lab: Lab;
  close(): Promise<void>;
}

/** flanneld's vxlan programming by hand: the reference a user would otherwise run. */
async function referenceVxlan(): Promise<Topology> {
  const lab = new Lab("bref");
  try {
    const nodes = [await lab.addNode(), await lab.addNode()];
    const subnets = ["198.19.1", "198.19.2"];
    const macs = ["0e:00:00:00:00:01", "0e:00:00:00:00:02"];
    const pods: Pod[] = [];
    for (const [i, n] of nodes.entries()) {
      const sh = (cmd: string) => lab.must(n.ns, ["sh", "-c", cmd]);
      await sh(
        `ip link add flannel.1 type vxlan id 1 local ${n.ip} dev eth0 dstport 8472 nolearning && ` +
          `ip link set flannel.1 address ${macs[i]} mtu 1450 up && ip addr add ${subnets[i]}.0/32 dev flannel.1 && ` +
          "sysctl -qw net.ipv4.ip_forward=1 && " +
          `ip link add cni0 type bridge && ip addr add ${subnets[i]}.1/24 dev cni0 && ip link set cni0 mtu 1450 up`,
      );
      const j = 1 - i;
      await sh(
        `ip neigh replace ${subnets[j]}.0 lladdr ${macs[j]} dev flannel.1 nud permanent && ` +
          `bridge fdb replace ${macs[j]} dev flannel.1 dst ${nodes[j]!.ip} self permanent && ` +
          `ip route replace ${subnets[j]}.0/24 via ${subnets[j]}.0 dev flannel.1 onlink`,
      );
      const ns = await lab.addNamespace(`p${n.index}`);
      const veth = `veth${n.index}`;
      await lab.must(n.ns, [
        "ip",
        "link",
        "add",
        veth,
        "mtu",
        "1450",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "mtu",
        "1450",
        "netns",
        ns,
      ]);
      await lab.must(n.ns, ["ip", "link", "set", veth, "master", "cni0", "up"]);
      await lab.must(ns, [
        "sh",
        "-c",
        `ip addr add ${subnets[i]}.2/24 dev eth0 && ip link set eth0 up && ip route add default via ${subnets[i]}.1`,
      ]);
      pods.push({ ns, ip: `${subnets[i]}.2`, hostVeth: veth });
    }
    return { name: "reference-vxlan", client: pods[0]!, server: pods[1]!, lab, close: () => lab.cleanup() };
  } catch (e) {
    await lab.cleanup();
    throw e;
  }
}

async function tartan(name: ConfigName, backend: string, flags: string[] = []): Promise<Topology> {
  const cl = await Cluster.create({
    backends: [backend, backend],
    registry: "sqlite",
    podsPerNode: 1,
    // identical pod plumbing in every configuration: no per-pod CNI masquerade rules here
    pods: "manual",
    tag: "b",
    agentFlags: flags,
  });
  return {
    name,
    client: cl.nodes[0]!.pods[0]!,
    server: cl.nodes[1]!.pods[0]!,
    lab: cl.lab,
    close: () => cl.close(),
  };
}

export function build(name: ConfigName): Promise<Topology> {
  switch (name) {
    case "reference-vxlan":
      return referenceVxlan();
    case "host-gw":
      return tartan(name, "host-gw");
    case "tartan-vxlan":
      return tartan(name, "vxlan");
    case "tartan-ebpf":
      return tartan(name, "ebpf-vxlan", ["--decap=tc"]);
  }
}
