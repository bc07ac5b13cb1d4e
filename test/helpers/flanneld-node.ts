/**
 * A flanneld-style kernel vxlan node made by hand, with iproute2 only: flannel.<VNI> as
 * flanneld's vxlan backend sets it up (learning off, the node's VTEP MAC, MTU underlay −
 * 50, address <subnet>.0/32), and per peer the onlink route, permanent neighbour and FDB
 * entry flanneld programs; plus subnet.env as flanneld writes it. Nothing of Tartan runs
 * on it: it is the "other side" of interop tests.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { formatIp4, parseCidr } from "../../src/config/cidr.ts";
import type { Lab } from "./netns.ts";

export interface FlanneldPeer {
  /** "198.19.1.0/24" */
  readonly subnet: string;
  readonly publicIp: string;
  readonly vtepMac: string;
}

export interface FlanneldNode {
  readonly device: string;
  readonly vtepMac: string;
  /** What flanneld programs for a peer lease (idempotent, as its `replace`s). */
  addPeer(p: FlanneldPeer): Promise<void>;
  /** What flanneld removes when a peer's lease goes. */
  removePeer(p: FlanneldPeer): Promise<void>;
}

/** The VTEP address flanneld gives a peer: its subnet's network address. */
const vtepOf = (subnet: string) => formatIp4(parseCidr(subnet)!.ip);

export async function makeFlanneldNode(
  lab: Lab,
  node: { ns: string; ip: string },
  o: { subnet: string; vtepMac: string; vni?: number; network: string; subnetFile?: string; mtu?: number },
): Promise<FlanneldNode> {
  const vni = o.vni ?? 1;
  const device = `flannel.${vni}`;
  const mtu = (o.mtu ?? 1500) - 50;
  const sh = (...a: string[]) => lab.must(node.ns, a);
  await sh("sysctl", "-qw", "net.ipv4.ip_forward=1");
  await sh(
    "ip",
    "link",
    "add",
    device,
    "address",
    o.vtepMac,
    "type",
    "vxlan",
    "id",
    String(vni),
    "local",
    node.ip,
    "dev",
    "eth0",
    "dstport",
    "8472",
    "nolearning",
  );
  await sh("ip", "link", "set", device, "mtu", String(mtu), "up");
  await sh("ip", "addr", "add", `${vtepOf(o.subnet)}/32`, "dev", device);
  if (o.subnetFile) {
    const sn = parseCidr(o.subnet)!;
    mkdirSync(dirname(o.subnetFile), { recursive: true });
    // flanneld's subnet.env: the first address of the subnet, the overlay's MTU
    writeFileSync(
      o.subnetFile,
      `FLANNEL_NETWORK=${o.network}\nFLANNEL_SUBNET=${formatIp4(sn.ip + 1)}/${sn.len}\nFLANNEL_MTU=${mtu}\nFLANNEL_IPMASQ=false\n`,
    );
  }
  return {
    device,
    vtepMac: o.vtepMac,
    async addPeer(p) {
      const vtep = vtepOf(p.subnet);
      await sh("ip", "neigh", "replace", vtep, "lladdr", p.vtepMac, "dev", device, "nud", "permanent");
      await sh("bridge", "fdb", "replace", p.vtepMac, "dev", device, "dst", p.publicIp, "self", "permanent");
      await sh("ip", "route", "replace", p.subnet, "via", vtep, "dev", device, "onlink");
    },
    async removePeer(p) {
      const vtep = vtepOf(p.subnet);
      await sh("ip", "route", "del", p.subnet, "via", vtep, "dev", device);
      await sh("bridge", "fdb", "del", p.vtepMac, "dev", device, "dst", p.publicIp, "self");
      await sh("ip", "neigh", "del", vtep, "dev", device);
    },
  };
}
