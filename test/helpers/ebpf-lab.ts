/**
 * Pods for datapath tests on top of the lab's node namespaces (test/helpers/netns.ts):
 * a `cni0` bridge holding the node's pod subnet gateway, and pod namespaces plugged
 * into it by veth, as the CNI bridge plugin would do. Plus reading a node's pinned
 * counters. Addresses: pods 198.19.<node>.0/24 only.
 */
import { COUNTER_NAMES, MAPS, u32Codec, u64Codec } from "../../src/bpf/abi.ts";
import { BpfMap } from "../../src/bpf/map.ts";
import type { Lab } from "./netns.ts";

export interface Pod {
  readonly ns: string;
  readonly ip: string;
  readonly node: string;
}

export const POD_MTU = 1450;

/** Creates cni0 (198.19.<n>.1/24) in the node namespace. */
export async function addBridge(lab: Lab, nodeNs: string, n: number): Promise<void> {
  await lab.must(nodeNs, ["ip", "link", "add", "cni0", "type", "bridge"]);
  await lab.must(nodeNs, ["ip", "addr", "add", `198.19.${n}.1/24`, "dev", "cni0"]);
  await lab.must(nodeNs, ["ip", "link", "set", "cni0", "mtu", String(POD_MTU), "up"]);
}

/** A pod namespace with eth0 = 198.19.<n>.<host>/24, default route via the bridge. */
export async function addPod(lab: Lab, nodeNs: string, n: number, host: number): Promise<Pod> {
  const ns = await lab.addNamespace(`p${n}x${host}`);
  const hostSide = `veth${n}x${host}`;
  await lab.must(nodeNs, [
    "ip",
    "link",
    "add",
    hostSide,
    "mtu",
    String(POD_MTU),
    "type",
    "veth",
    "peer",
    "name",
    "eth0",
    "netns",
    ns,
  ]);
  await lab.must(nodeNs, ["ip", "link", "set", hostSide, "master", "cni0", "up"]);
  const ip = `198.19.${n}.${host}`;
  await lab.must(ns, ["ip", "link", "set", "eth0", "mtu", String(POD_MTU), "up"]);
  await lab.must(ns, ["ip", "addr", "add", `${ip}/24`, "dev", "eth0"]);
  await lab.must(ns, ["ip", "route", "add", "default", "via", `198.19.${n}.1`]);
  return { ns, ip, node: nodeNs };
}

/** Counter name → sum over CPUs, read from a node's pinned counter map. */
export function pinnedCounters(bpffs: string): Record<string, number> {
  using m = BpfMap.openPinned(`${bpffs}/maps/${MAPS.counters}`, u32Codec, u64Codec, { perCpu: true });
  if (m === null) throw new Error(`no pinned counters under ${bpffs}`);
  const out: Record<string, number> = {};
  COUNTER_NAMES.forEach((name, i) => {
    out[name] = Number((m.lookupPerCpu(i) ?? []).reduce((x, y) => x + y, 0n));
  });
  return out;
}
