/**
 * The CNI plugin's hook into the ebpf-vxlan datapath: on ADD the pod goes into the
 * pinned endpoint map (pod IP → host-side veth, pod MAC, gateway MAC), and in dual stack
 * its IPv6 address into tartan_endpoints6 with the same value, so decapsulated traffic
 * of either family is redirected straight into it, the pod program goes onto its veth's TC
 * ingress (the send fast path, from its first packet: the agent need not see the pod
 * first), and encap is attached to the bridge if this is the first pod; on DEL the entries
 * go (the veth, with its program, goes with the pod). The plugin finds the running agent's pins
 * through the datapath file the agent writes next to subnet.env (datapath-file.ts), so
 * no config key is needed whatever --node-name and --bpffs the agent runs with. When it
 * cannot (no agent yet, another backend, pins removed), ADD still succeeds — the pod is
 * reached through the bridge, and the agent picks it up from there — and the plugin says
 * why on stderr, which the runtime keeps.
 */
import { existsSync } from "node:fs";
import { openPin } from "../../bpf/pin.ts";
import { parseIp4 } from "../../config/cidr.ts";
import { parseIp6 } from "../../config/cidr6.ts";
import { DEFAULT_SUBNET_FILE } from "../../config/options.ts";
import { errorText, type Logger, silentLogger } from "../../log.ts";
import { getLink } from "../../net/ip.ts";
import { readDatapathFile } from "../datapath-file.ts";
import type { Endpoint, EndpointSink, EndpointSinkContext } from "../endpoint.ts";
import { DEFAULT_BRIDGE } from "../facts-shape.ts";
import { attachBridgeEncap, attachPodEncap } from "./endpoint-sync.ts";
import { endpointValue } from "./endpoints.ts";
import { mapPin, programPin } from "./facts.ts";
import { withPinnedMap } from "./pins.ts";

const SLOW_PATH = "the pod is reached through the bridge until the agent finds it there";

/**
 * The running agent's pin directory, or null (with the reason logged: at warn for ADD,
 * where a pod misses the fast path; at debug for DEL, which has nothing to lose).
 */
function agentBpffs(subnetFile: string, log: Logger, loud: boolean): string | null {
  const say = loud ? log.warn.bind(log) : log.debug.bind(log);
  const r = readDatapathFile(subnetFile);
  if (r.kind === "missing") {
    say(
      `no datapath file from the tartan agent; ${SLOW_PATH} (is the agent running with --subnet-file=${subnetFile}?)`,
      {
        file: r.path,
      },
    );
    return null;
  }
  if (r.kind === "invalid") {
    say(`the tartan agent's datapath file is unreadable; ${SLOW_PATH}`, { file: r.path, reason: r.reason });
    return null;
  }
  if (r.info.backend !== "ebpf-vxlan" || !r.info.bpffs) {
    log.debug("the agent's backend has no endpoint map; nothing to register", { backend: r.info.backend });
    return null;
  }
  if (!existsSync(mapPin(r.info.bpffs, "endpoints"))) {
    say(`the tartan agent's endpoint map is not pinned (agent stopped and cleaned up?); ${SLOW_PATH}`, {
      node: r.info.node,
      pin: mapPin(r.info.bpffs, "endpoints"),
    });
    return null;
  }
  return r.info.bpffs;
}

/** The first pod on a new bridge: attach encap where pod traffic enters, if the agent has not yet. */
async function ensureBridgeEncap(bpffs: string, bridgeName: string): Promise<string> {
  const bridge = await getLink(bridgeName);
  if (!bridge) throw new Error(`bridge ${bridgeName} not found`);
  // the attached filter holds the program; our fd on its pin is closed at the end of the block
  using prog = openPin(programPin(bpffs, "encapFwd"));
  if (prog !== null) attachBridgeEncap(bridge.ifindex, bridgeName, prog.fd);
  return bridge.address;
}

export function createEbpfEndpointSink(ctx: EndpointSinkContext): EndpointSink {
  const subnetFile = typeof ctx.conf.subnetFile === "string" ? ctx.conf.subnetFile : DEFAULT_SUBNET_FILE;
  const log = ctx.log ?? silentLogger;
  return {
    async add(ep: Endpoint): Promise<void> {
      const bpffs = agentBpffs(subnetFile, log, true);
      if (bpffs === null) return;
      const ip = parseIp4(ep.ip);
      if (ip === null) throw new Error(`endpoint IP ${ep.ip} is not IPv4`);
      const ip6 = ep.ip6 === undefined ? null : parseIp6(ep.ip6);
      if (ep.ip6 !== undefined && ip6 === null)
        throw new Error(`endpoint IPv6 address ${ep.ip6} is not IPv6`);
      const bridgeMac = await ensureBridgeEncap(bpffs, ep.bridge ?? DEFAULT_BRIDGE);
      const value = endpointValue(ep.ifindex, ep.mac, bridgeMac);
      withPinnedMap(bpffs, "endpoints", (m) => m.update(ip, value));
      // every agent of this version pins tartan_endpoints6; one from before dual stack does not
      if (ip6 !== null && withPinnedMap(bpffs, "endpoints6", (m) => m.update(ip6, value)) === null)
        log.warn(
          "the tartan agent pinned no IPv6 endpoint map (an older agent?); the pod's IPv6 goes through the bridge",
          {
            ip6: ep.ip6,
          },
        );
      log.debug("pod written to the endpoint maps", {
        ip: ep.ip,
        ...(ep.ip6 ? { ip6: ep.ip6 } : {}),
        ifindex: ep.ifindex,
        bpffs,
      });
      // after the entry: the program sends only what the map puts behind this veth
      using prog = openPin(programPin(bpffs, "encapPod"));
      if (prog === null) {
        log.warn(
          "the tartan agent pinned no pod program (an older agent?); the pod's traffic is encapsulated at the bridge",
          {
            veth: ep.hostVeth,
          },
        );
        return;
      }
      try {
        attachPodEncap(ep.ifindex, ep.hostVeth, prog.fd, log);
      } catch (e) {
        log.warn(
          "cannot attach the pod fast path to the pod's veth; its traffic is encapsulated at the bridge",
          {
            veth: ep.hostVeth,
            error: errorText(e),
          },
        );
      }
    },
    async remove(ipText: string, ip6Text?: string): Promise<void> {
      const ip = parseIp4(ipText);
      const ip6 = ip6Text === undefined ? null : parseIp6(ip6Text);
      const bpffs = agentBpffs(subnetFile, log, false);
      if (bpffs === null) return;
      if (ip !== null) withPinnedMap(bpffs, "endpoints", (m) => m.delete(ip));
      if (ip6 !== null) withPinnedMap(bpffs, "endpoints6", (m) => m.delete(ip6));
    },
  };
}
