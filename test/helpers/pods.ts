/**
 * Pods for tests and the demo: a pod is a network namespace whose eth0 is a veth on its
 * node's cni0 bridge, addressed from the node's subnet.env the way flannel's CNI plugin
 * (bridge + host-local, isGateway) would: bridge = first address, pods after it,
 * default route via the bridge, MTU = FLANNEL_MTU; in a dual-stack subnet.env the same
 * for IPv6 (addresses without duplicate address detection).
 */
import { readFileSync } from "node:fs";
import { firstHost, formatIp4 } from "../../src/config/cidr.ts";
import { firstHost6, formatIp6, nthAddress6 } from "../../src/config/cidr6.ts";
import { parseSubnetEnv } from "../../src/config/subnet-env.ts";
import type { Lab } from "./netns.ts";

export interface Pod {
  readonly ns: string;
  readonly ip: string;
  /** The pod's IPv6 address on a dual-stack node. */
  readonly ip6?: string;
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
  const sn6 = env.subnet6 ?? null;
  const gw6 = sn6 ? `${formatIp6(firstHost6(sn6))}/${sn6.len}` : null;
  const have = await lab.exec(node.ns, ["ip", "link", "show", "cni0"]);
  if (have.code !== 0) {
    await lab.must(node.ns, ["ip", "link", "add", "cni0", "type", "bridge"]);
    await lab.must(node.ns, ["ip", "addr", "add", `${gw}/${env.subnet.len}`, "dev", "cni0"]);
    if (gw6) await lab.must(node.ns, ["ip", "addr", "add", gw6, "dev", "cni0", "nodad"]);
    await lab.must(node.ns, ["ip", "link", "set", "cni0", "mtu", mtu, "up"]);
    await lab.must(node.ns, ["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    if (gw6) await lab.must(node.ns, ["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
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
  if (!sn6) return { ns, ip, hostVeth };
  const ip6 = formatIp6(nthAddress6(sn6, n));
  await lab.must(ns, ["ip", "addr", "add", `${ip6}/${sn6.len}`, "dev", "eth0", "nodad"]);
  await lab.must(ns, ["ip", "-6", "route", "add", "default", "via", formatIp6(firstHost6(sn6))]);
  return { ns, ip, ip6, hostVeth };
}

/** ping -c N (IPv4 or IPv6, by the address); returns received count (0 when the command fails). */
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

/** The plugin config a runtime would pass (what deploy/cni/10-tartan.conflist says), state under the lab. */
function cniConf(lab: Lab, node: { index: number }, subnetFile: string): string {
  const base = `${lab.dir}/cni-${node.index}`;
  return JSON.stringify({
    cniVersion: "1.0.0",
    name: "cbr0",
    type: "tartan",
    subnetFile,
    dataDir: `${base}/flannel`,
    ipam: { dataDir: `${base}/networks` },
    delegate: { hairpinMode: true, isDefaultGateway: true },
  });
}

function cniEnv(command: string, name: string, ns: string): string[] {
  return [
    `CNI_COMMAND=${command}`,
    `CNI_CONTAINERID=${name}`,
    `CNI_NETNS=/run/netns/${ns}`,
    "CNI_IFNAME=eth0",
    "CNI_PATH=/usr/lib/cni",
  ];
}

/**
 * A pod added the way a container runtime adds one: `tartan cni` (CNI_COMMAND=ADD) in
 * the node's namespace, which reads subnet.env and delegates to the real `bridge` and
 * `host-local` plugins. State and IPAM files go under the lab's directory.
 */
export async function addPodViaCni(
  lab: Lab,
  node: { ns: string; index: number },
  subnetFile: string,
  opts: { binary: string; name?: string },
): Promise<Pod> {
  const name = opts.name ?? `p${node.index}x${Math.floor(Math.random() * 1e6).toString(36)}`;
  const ns = await lab.addNamespace(name);
  const r = await lab.exec(
    node.ns,
    ["env", ...cniEnv("ADD", name, ns), opts.binary],
    cniConf(lab, node, subnetFile),
  );
  if (r.code !== 0) throw new Error(`CNI ADD for ${name} on ${node.ns} failed: ${r.stdout} ${r.stderr}`);
  const res = JSON.parse(r.stdout) as {
    ips?: { address: string }[];
    interfaces?: { name: string; sandbox?: string }[];
  };
  const ip = res.ips?.find((x) => !x.address.includes(":"))?.address.split("/")[0];
  const ip6 = res.ips?.find((x) => x.address.includes(":"))?.address.split("/")[0];
  const hostVeth = res.interfaces?.find((i) => !i.sandbox && i.name !== "cni0")?.name ?? "";
  if (!ip) throw new Error(`CNI ADD for ${name} returned no address: ${r.stdout}`);
  return ip6 ? { ns, ip, ip6, hostVeth } : { ns, ip, hostVeth };
}

/** Removes a pod as the runtime does: CNI DEL (frees its address and rules), then its namespace. */
export async function removePodViaCni(
  lab: Lab,
  node: { ns: string; index: number },
  subnetFile: string,
  pod: Pod,
  opts: { binary: string },
): Promise<void> {
  const name = pod.ns.slice(lab.prefix.length + 1);
  const r = await lab.exec(
    node.ns,
    ["env", ...cniEnv("DEL", name, pod.ns), opts.binary],
    cniConf(lab, node, subnetFile),
  );
  if (r.code !== 0) throw new Error(`CNI DEL for ${name} on ${node.ns} failed: ${r.stdout} ${r.stderr}`);
  await lab.deleteNamespace(pod.ns);
}
