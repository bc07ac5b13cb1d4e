/**
 * The overlay device `tartan.<VNI>` and the cluster route through it: the slow path that
 * carries what the fast path did not take (traffic from the host itself, or before a
 * program is attached) into the same maps and wire format. The device is one end of a
 * NOARP veth pair (this kernel has no dummy driver): its TC egress program encapsulates
 * and redirects to the underlay before the veth would transmit. The peer end is up (so
 * the route is not "linkdown") but inert: no forwarding, no IPv6; anything reaching it
 * is dropped by the stack.
 */
import type { Cidr } from "../../config/cidr.ts";
import type { Cidr6 } from "../../config/cidr6.ts";
import type { Logger } from "../../log.ts";
import { run } from "../../net/exec.ts";
import { deleteLink, getLink, ip, listAddrs } from "../../net/ip.ts";
import { mainRouteVia } from "../../net/routes.ts";
import { confKey, ensureSysctl } from "../../net/sysctl.ts";
import { routeArgs, routeLine, vtepAddress, vtepAddress6 } from "../facts-shape.ts";
import { overlayDeviceName, overlayPeerName, overlayRoute, overlayRoute6 } from "./facts.ts";

export interface OverlayOptions {
  readonly log: Logger;
  readonly vni: number;
  /** The VTEP MAC the device carries (what our lease announces). */
  readonly mac: string;
  readonly mtu: number;
  /**
   * Dual stack: IPv6 on the device (its peer stays without), and no IPv6 segmentation
   * offload, so the stack segments IPv6 GSO packets before they cross to the peer, whose
   * ingress program encapsulates each segment (bpf/include/encap6.h says why).
   */
  readonly dual?: boolean;
}

/** The offloads a dual-stack overlay device goes without: IPv6 TCP and UDP segmentation. */
export const OVERLAY6_OFFLOADS_OFF = ["tx-tcp6-segmentation", "tx-udp-segmentation"] as const;

export class OverlayDevice {
  readonly name: string;
  readonly peer: string;
  /** ifindex once ensure() ran (0 before). */
  ifindex = 0;
  /** The peer's ifindex once ensure() ran (0 before). */
  peerIfindex = 0;
  readonly #o: OverlayOptions;

  constructor(o: OverlayOptions) {
    this.#o = o;
    this.name = overlayDeviceName(o.vni);
    this.peer = overlayPeerName(o.vni);
  }

  /** Creates the veth pair, or adopts it (fixing MAC and MTU); both ends up, NOARP, no IPv6. */
  async ensure(): Promise<number> {
    const { log, mac, mtu } = this.#o;
    const dev = this.name;
    let l = await getLink(dev);
    if (l && l.kind !== "veth") {
      log.warn("replacing an overlay device of another kind", { dev, kind: l.kind });
      await deleteLink(dev);
      l = null;
    }
    const m = String(mtu);
    if (!l) {
      await ip(
        "link",
        "add",
        dev,
        "address",
        mac,
        "mtu",
        m,
        "type",
        "veth",
        "peer",
        "name",
        this.peer,
        "mtu",
        m,
      );
      log.info("created overlay device", { dev, peer: this.peer, mac, mtu });
    } else if (l.address !== mac || l.mtu !== mtu) {
      await ip("link", "set", "dev", dev, "address", mac, "mtu", m);
    }
    const dual = this.#o.dual === true;
    for (const name of [dev, this.peer]) {
      try {
        ensureSysctl(confKey(name, "disable_ipv6", "ipv6"), dual && name === dev ? 0 : 1);
      } catch {}
      await ip("link", "set", "dev", name, "arp", "off");
    }
    if (dual) {
      ensureSysctl(confKey(dev, "accept_ra", "ipv6"), 0);
      const cmd = ["ethtool", "-K", dev, ...OVERLAY6_OFFLOADS_OFF.flatMap((f) => [f, "off"])];
      const r = await run(cmd).catch((e: Error) => ({ code: -1, stderr: e.message }));
      if (r.code !== 0)
        throw new Error(
          `${cmd.join(" ")} failed (${r.stderr.trim() || `exit ${r.code}`}): dual stack on ebpf-vxlan needs ethtool (apt install ethtool)`,
        );
    }
    ensureSysctl(confKey(this.peer, "forwarding"), 0);
    await ip("link", "set", "dev", this.peer, "up");
    await ip("link", "set", "dev", dev, "up");
    this.ifindex = (await getLink(dev))!.ifindex;
    this.peerIfindex = (await getLink(this.peer))!.ifindex;
    return this.ifindex;
  }

  /** Our subnet's VTEP address on the device (any other IPv4 address goes), and the cluster route via it. */
  async setLocal(subnet: Cidr, network: Cidr): Promise<string> {
    const dev = this.name;
    const want = vtepAddress(subnet);
    for (const a of await listAddrs(dev))
      if (a.family === "inet" && `${a.local}/${a.prefixlen}` !== want)
        await ip("addr", "del", `${a.local}/${a.prefixlen}`, "dev", dev);
    await ip("addr", "replace", want, "dev", dev);
    const route = overlayRoute(network, this.#o.vni);
    await ip("route", "replace", ...routeArgs(route));
    return routeLine(route);
  }

  /** Dual stack: our IPv6 subnet's VTEP address on the device (others go), and the IPv6 network's route via it. */
  async setLocal6(subnet6: Cidr6, network6: Cidr6): Promise<string> {
    const dev = this.name;
    const want = vtepAddress6(subnet6);
    for (const a of await listAddrs(dev))
      if (a.family === "inet6" && a.scope !== "link" && `${a.local}/${a.prefixlen}` !== want)
        await ip("addr", "del", `${a.local}/${a.prefixlen}`, "dev", dev);
    // nodad: nothing answers duplicate address detection here (as flannel-v6)
    await ip("addr", "replace", want, "dev", dev, "nodad");
    const route = overlayRoute6(network6, this.#o.vni);
    await ip("-6", "route", "replace", ...routeArgs(route));
    return routeLine(route);
  }

  /** Is the cluster route via the device there? (Read without spawning: the watchdog asks every 5 s.) */
  routePresent(network: Cidr): boolean {
    try {
      return mainRouteVia(this.name, network);
    } catch {
      return false;
    }
  }
}

/** `tartan cleanup`: deletes the device (its peer and its route go with it). */
export function deleteOverlayDevice(vni: number): Promise<boolean> {
  return deleteLink(overlayDeviceName(vni));
}
