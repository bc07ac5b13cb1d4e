/**
 * The CNI plugin's hook into the ebpf-vxlan datapath: on ADD the pod goes into the
 * pinned endpoint map (pod IP → host-side veth, pod MAC, gateway MAC) so decapsulated
 * traffic is redirected straight into it, and encap is attached to the bridge if this is
 * the first pod; on DEL the entry goes. The pins live under the agent's --bpffs (the
 * conflist's "bpffs" key, default /sys/fs/bpf/tartan/<host name>). No pins (the agent
 * never ran, or another backend) → nothing to do: the agent picks the pod up from the
 * bridge when it starts.
 */
import { existsSync } from "node:fs";
import { hostname } from "node:os";
import { type EndpointValue, endpointValueCodec, ip4KeyCodec, MAPS, PROGRAMS } from "../../bpf/abi.ts";
import { BpfMap } from "../../bpf/map.ts";
import { openPin } from "../../bpf/pin.ts";
import type { Endpoint, EndpointSink, EndpointSinkContext } from "../../cni/endpoints.ts";
import { parseIp4 } from "../../config/cidr.ts";
import { getLink } from "../../net/ip.ts";
import { attachTc, mapPinDir, ourTc } from "./datapath.ts";
import { DEFAULT_BRIDGE } from "./model.ts";

export function defaultBpffs(): string {
  return `/sys/fs/bpf/tartan/${hostname().split(".")[0] ?? "node"}`;
}

function endpointsMap(bpffs: string): BpfMap<number, EndpointValue> | null {
  const fd = openPin(`${mapPinDir(bpffs)}/${MAPS.endpoints}`);
  return fd === null ? null : new BpfMap(MAPS.endpoints, fd, ip4KeyCodec, endpointValueCodec);
}

export function createEbpfEndpointSink(ctx: EndpointSinkContext): EndpointSink {
  const bpffs = typeof ctx.conf.bpffs === "string" ? ctx.conf.bpffs : defaultBpffs();
  const pinned = () => existsSync(`${mapPinDir(bpffs)}/${MAPS.endpoints}`);
  return {
    async add(ep: Endpoint): Promise<void> {
      if (!pinned()) return;
      const ip = parseIp4(ep.ip);
      if (ip === null) throw new Error(`endpoint IP ${ep.ip} is not IPv4`);
      const bridgeName = ep.bridge ?? DEFAULT_BRIDGE;
      const bridge = await getLink(bridgeName);
      if (!bridge) throw new Error(`bridge ${bridgeName} not found`);
      // the first pod on a new bridge: attach encap where pod traffic enters, if the agent has not yet
      if (!ourTc(bridge.ifindex, bridgeName, "ingress")) {
        const prog = openPin(`${bpffs}/progs/${PROGRAMS.encapFwd}`);
        if (prog !== null) attachTc(bridge.ifindex, bridgeName, "ingress", prog);
      }
      const m = endpointsMap(bpffs);
      if (!m) return;
      try {
        m.update(ip, {
          ifindex: ep.ifindex,
          podMac: ep.mac.toLowerCase(),
          gwMac: bridge.address.toLowerCase(),
        });
      } finally {
        m.close();
      }
    },
    async remove(ipText: string): Promise<void> {
      if (!pinned()) return;
      const ip = parseIp4(ipText);
      const m = endpointsMap(bpffs);
      if (!m || ip === null) return;
      try {
        m.delete(ip);
      } finally {
        m.close();
      }
    },
  };
}
