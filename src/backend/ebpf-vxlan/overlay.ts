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
import type { Logger } from "../../log.ts";
import { deleteLink, getLink, ip, listAddrs } from "../../net/ip.ts";
import { mainRouteVia } from "../../net/routes.ts";
import { confKey, ensureSysctl } from "../../net/sysctl.ts";
import { routeArgs, routeLine, vtepAddress } from "../facts-shape.ts";
import { overlayDeviceName, overlayPeerName, overlayRoute } from "./facts.ts";

export interface OverlayOptions {
  readonly log: Logger;
  readonly vni: number;
  /** The VTEP MAC the device carries (what our lease announces). */
  readonly mac: string;
  readonly mtu: number;
}

export class OverlayDevice {
  readonly name: string;
  readonly peer: string;
  /** ifindex once ensure() ran (0 before). */
  ifindex = 0;
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
    for (const name of [dev, this.peer]) {
      try {
        ensureSysctl(confKey(name, "disable_ipv6", "ipv6"), 1);
      } catch {}
      await ip("link", "set", "dev", name, "arp", "off");
    }
    ensureSysctl(confKey(this.peer, "forwarding"), 0);
    await ip("link", "set", "dev", this.peer, "up");
    await ip("link", "set", "dev", dev, "up");
    this.ifindex = (await getLink(dev))!.ifindex;
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
