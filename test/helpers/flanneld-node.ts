/**
 * A flanneld-style kernel vxlan node made by hand, with iproute2 only: flannel.<VNI> as
 * flanneld's vxlan backend sets it up (learning off, the node's VTEP MAC, MTU underlay −
 * 50, address <subnet>.0/32), and per peer the onlink route, permanent neighbour and FDB
 * entry flanneld programs; plus subnet.env as flanneld writes it. Dual stack (`v6`) adds
 * flannel-v6.<VNI> on the IPv6 underlay (address <IPv6 subnet>::/128) and the same three
 * entries per dual-stack peer, and FLANNEL_IPV6_* in subnet.env. Nothing of Tartan runs
 * on it: it is the "other side" of interop tests.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { formatIp4, parseCidr } from "../../src/config/cidr.ts";
import { formatCidr6, formatIp6, parseCidr6 } from "../../src/config/cidr6.ts";
import type { Lab } from "./netns.ts";

export interface FlanneldPeer {
  /** "198.19.1.0/24" */
  readonly subnet: string;
  readonly publicIp: string;
  readonly vtepMac: string;
  /** A dual-stack peer's IPv6 side (programmed only on a dual-stack flanneld node). */
  readonly v6?: { readonly subnet: string; readonly publicIp: string; readonly vtepMac: string };
}

/** The IPv6 side of a dual-stack flanneld node. */
export interface FlanneldV6 {
  /** Its underlay IPv6 address (flannel-v6's local). */
  readonly ip: string;
  /** "fd00:19:0:3::/64" */
  readonly subnet: string;
  readonly vtepMac: string;
  /** IPv6Network, for subnet.env. */
  readonly network: string;
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
/** …and in IPv6: the IPv6 subnet's network address. */
const vtep6Of = (subnet6: string) => formatIp6(parseCidr6(subnet6)!.ip);

export async function makeFlanneldNode(
  lab: Lab,
  node: { ns: string; ip: string },
  o: {
    subnet: string;
    vtepMac: string;
    vni?: number;
    network: string;
    subnetFile?: string;
    mtu?: number;
    v6?: FlanneldV6;
  },
): Promise<FlanneldNode> {
  const vni = o.vni ?? 1;
  const device = `flannel.${vni}`;
  const device6 = `flannel-v6.${vni}`;
  const mtu = (o.mtu ?? 1500) - 50;
  const sh = (...a: string[]) => lab.must(node.ns, a);
  const vxlanDevice = async (dev: string, mac: string, local: string) => {
    await sh(
      "ip",
      "link",
      "add",
      dev,
      "mtu",
      String(mtu),
      "address",
      mac,
      "type",
      "vxlan",
      "id",
      String(vni),
      "local",
      local,
      "dev",
      "eth0",
      "dstport",
      "8472",
      "nolearning",
    );
    await sh("ip", "link", "set", dev, "up");
  };
  await sh("sysctl", "-qw", "net.ipv4.ip_forward=1");
  await vxlanDevice(device, o.vtepMac, node.ip);
  await sh("ip", "addr", "add", `${vtepOf(o.subnet)}/32`, "dev", device);
  if (o.v6) {
    await sh("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1");
    // flanneld asks for underlay − 50 here too; the kernel clamps IPv6 VXLAN to underlay − 70
    await vxlanDevice(device6, o.v6.vtepMac, o.v6.ip);
    await sh("ip", "addr", "add", `${vtep6Of(o.v6.subnet)}/128`, "dev", device6, "nodad");
  }
  if (o.subnetFile) {
    const sn = parseCidr(o.subnet)!;
    mkdirSync(dirname(o.subnetFile), { recursive: true });
    // flanneld's subnet.env: the first address of each subnet, the overlay's MTU
    const v6 = o.v6
      ? `FLANNEL_IPV6_NETWORK=${o.v6.network}\nFLANNEL_IPV6_SUBNET=${formatCidr6(parseCidr6(o.v6.subnet)!).replace("::/", "::1/")}\n`
      : "";
    writeFileSync(
      o.subnetFile,
      `FLANNEL_NETWORK=${o.network}\nFLANNEL_SUBNET=${formatIp4(sn.ip + 1)}/${sn.len}\n${v6}FLANNEL_MTU=${mtu}\nFLANNEL_IPMASQ=false\n`,
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
      if (!o.v6 || !p.v6) return;
      const vtep6 = vtep6Of(p.v6.subnet);
      await sh("ip", "neigh", "replace", vtep6, "lladdr", p.v6.vtepMac, "dev", device6, "nud", "permanent");
      await sh(
        "bridge",
        "fdb",
        "replace",
        p.v6.vtepMac,
        "dev",
        device6,
        "dst",
        p.v6.publicIp,
        "self",
        "permanent",
      );
      await sh("ip", "-6", "route", "replace", p.v6.subnet, "via", vtep6, "dev", device6, "onlink");
    },
    async removePeer(p) {
      const vtep = vtepOf(p.subnet);
      await sh("ip", "route", "del", p.subnet, "via", vtep, "dev", device);
      await sh("bridge", "fdb", "del", p.vtepMac, "dev", device, "dst", p.publicIp, "self");
      await sh("ip", "neigh", "del", vtep, "dev", device);
      if (!o.v6 || !p.v6) return;
      const vtep6 = vtep6Of(p.v6.subnet);
      await sh("ip", "-6", "route", "del", p.v6.subnet, "via", vtep6, "dev", device6);
      await sh("bridge", "fdb", "del", p.v6.vtepMac, "dev", device6, "dst", p.v6.publicIp, "self");
      await sh("ip", "neigh", "del", vtep6, "dev", device6);
    },
  };
}
