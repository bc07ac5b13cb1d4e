/**
 * Pods for tests and the demo: a pod is a network namespace whose eth0 is a veth on its
 * node's cni0 bridge, addressed from the node's subnet.env the way flannel's CNI plugin
 * (bridge + host-local, isGateway) would: bridge = first address, pods after it,
 * default route via the bridge, MTU = FLANNEL_MTU.
 */
import { readFileSync } from "node:fs";
import { firstHost, formatIp4 } from "../../src/config/cidr.ts";
import { parseSubnetEnv } from "../../src/config/subnet-env.ts";
import type { Lab } from "./netns.ts";

export interface Pod {
  readonly ns: string;
  readonly ip: string;
  readonly hostVeth: string;
}

/** Creates cni0 on the node (once) and a pod at offset `n` (2 = first pod) in the node's subnet. */
export async function addPod(
  lab: Lab,
  node: { ns: string; index: number },
  subnetFile: string,
  n = 2,
): Promise<Pod> {
  const env = parseSubnetEnv(readFileSync(subnetFile, "utf8"));
  const gw = formatIp4(firstHost(env.subnet));
  const mtu = String(env.mtu);
  const have = await lab.exec(node.ns, ["ip", "link", "show", "cni0"]);
  if (have.code !== 0) {
    await lab.must(node.ns, ["ip", "link", "add", "cni0", "type", "bridge"]);
    await lab.must(node.ns, ["ip", "addr", "add", `${gw}/${env.subnet.len}`, "dev", "cni0"]);
    await lab.must(node.ns, ["ip", "link", "set", "cni0", "mtu", mtu, "up"]);
    await lab.must(node.ns, ["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
  }
  const ns = await lab.addNamespace(`p${node.index}x${n}`);
  const hostVeth = `veth${node.index}x${n}`;
  const ip = formatIp4((env.subnet.ip + n) >>> 0);
  await lab.must(node.ns, [
    "ip",
    "link",
    "add",
    hostVeth,
    "mtu",
    mtu,
    "type",
    "veth",
    "peer",
    "name",
    "eth0",
    "mtu",
    mtu,
    "netns",
    ns,
  ]);
  await lab.must(node.ns, ["ip", "link", "set", hostVeth, "master", "cni0", "up"]);
  await lab.must(ns, ["ip", "addr", "add", `${ip}/${env.subnet.len}`, "dev", "eth0"]);
  await lab.must(ns, ["ip", "link", "set", "eth0", "up"]);
  await lab.must(ns, ["ip", "route", "add", "default", "via", gw]);
  return { ns, ip, hostVeth };
}

/** ping -c N; returns received count (0 when the command fails). */
export async function ping(
  lab: Lab,
  ns: string,
  dst: string,
  opts: { count?: number; interval?: number; size?: number; timeoutS?: number } = {},
): Promise<{ sent: number; received: number; out: string }> {
  const count = opts.count ?? 3;
  const args = [
    "ping",
    "-n",
    "-c",
    String(count),
    "-W",
    String(opts.timeoutS ?? 1),
    "-i",
    String(opts.interval ?? 0.2),
  ];
  if (opts.size !== undefined) args.push("-s", String(opts.size), "-M", "do");
  const r = await lab.exec(ns, [...args, dst]);
  const m = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
  return { sent: m ? Number(m[1]) : count, received: m ? Number(m[2]) : 0, out: r.stdout + r.stderr };
}
