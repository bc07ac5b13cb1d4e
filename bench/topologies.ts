/**
 * The benchmark's two-node setups, one pod per node, all on the same kind of underlay
 * (veth into a bridge namespace, MTU 1500):
 *   reference-vxlan — iproute2 only, exactly flanneld's vxlan device, onlink routes,
 *                     neighbour and FDB entries; no Tartan code runs
 *   host-gw         — Tartan's host-gw backend: plain routing, no encapsulation (the ceiling)
 *   tartan-vxlan    — Tartan's kernel vxlan backend
 *   tartan-ebpf     — Tartan's ebpf-vxlan backend (TC encap at the pod's veth, TC decap +
 *                     redirect_peer)
 *   tartan-vxlan-v6 — dual stack, measured over the pods' IPv6 addresses: the kernel's
 *                     flannel-v6 device (Tartan's vxlan backend, as flanneld programs it)
 *   tartan-ebpf-v6  — dual stack, IPv6: ebpf-vxlan's VXLAN over the IPv6 underlay
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { Cluster } from "../test/helpers/cluster.ts";
import { Lab } from "../test/helpers/netns.ts";
import { addPodViaBridgePlugin, type Pod } from "../test/helpers/pods.ts";

export const CONFIGS = [
  "reference-vxlan",
  "host-gw",
  "tartan-vxlan",
  "tartan-ebpf",
  "tartan-vxlan-v6",
  "tartan-ebpf-v6",
] as const;
export type ConfigName = (typeof CONFIGS)[number];

export interface Topology {
  readonly name: ConfigName;
  readonly client: Pod;
  readonly server: Pod;
  /** The address measured: the server pod's IPv4 address, or its IPv6 one (the -v6 setups). */
  readonly target: string;
  readonly lab: Lab;
  close(): Promise<void>;
}

/**
 * Pods exactly as flannel's CNI plugin makes them, in every configuration: the real
 * `bridge` + `host-local` plugins with the delegate config flannel builds from subnet.env
 * (isGateway, hairpinMode, MTU = FLANNEL_MTU), with the bridge plugin's ipMasq off as
 * under kube-flannel's --ip-masq — no configuration runs masquerade rules, so none pays
 * conntrack for them. Tartan configurations go through `tartan cni` (which delegates to
 * the same plugins and, for ebpf-vxlan, attaches the pod program at ADD); the reference
 * calls the bridge plugin directly, as flannel's plugin would.
 */
export const POD_DELEGATE = { ipMasq: false } as const;

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
          "sysctl -qw net.ipv4.ip_forward=1",
      );
      const j = 1 - i;
      await sh(
        `ip neigh replace ${subnets[j]}.0 lladdr ${macs[j]} dev flannel.1 nud permanent && ` +
          `bridge fdb replace ${macs[j]} dev flannel.1 dst ${nodes[j]!.ip} self permanent && ` +
          `ip route replace ${subnets[j]}.0/24 via ${subnets[j]}.0 dev flannel.1 onlink`,
      );
      // what flanneld writes for flannel's CNI plugin
      const subnetFile = join(lab.dir, `n${n.index}`, "subnet.env");
      mkdirSync(dirname(subnetFile), { recursive: true });
      writeFileSync(
        subnetFile,
        `FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=${subnets[i]}.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n`,
      );
      pods.push(await addPodViaBridgePlugin(lab, n, subnetFile, { delegate: POD_DELEGATE }));
    }
    return {
      name: "reference-vxlan",
      client: pods[0]!,
      server: pods[1]!,
      target: pods[1]!.ip,
      lab,
      close: () => lab.cleanup(),
    };
  } catch (e) {
    await lab.cleanup();
    throw e;
  }
}

async function tartan(
  name: ConfigName,
  backend: string,
  flags: string[] = [],
  ipv6 = false,
): Promise<Topology> {
  const cl = await Cluster.create({
    ipv6,
    backends: [backend, backend],
    registry: "sqlite",
    podsPerNode: 1,
    pods: "cni",
    podDelegate: POD_DELEGATE,
    tag: "b",
    agentFlags: flags,
  });
  const server = cl.nodes[1]!.pods[0]!;
  return {
    name,
    client: cl.nodes[0]!.pods[0]!,
    server,
    target: ipv6 ? server.ip6! : server.ip,
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
    case "tartan-vxlan-v6":
      return tartan(name, "vxlan", [], true);
    case "tartan-ebpf-v6":
      return tartan(name, "ebpf-vxlan", ["--decap=tc"], true);
  }
}
