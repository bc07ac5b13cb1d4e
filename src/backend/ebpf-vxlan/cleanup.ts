/**
 * `tartan cleanup` for the ebpf-vxlan backend: removes everything it created — our TC
 * programs (tcx and clsact) and XDP program on every link, the overlay device (its peer and route go with
 * it) and the pins. rp_filter and ip_forward are left as set.
 */
import { existsSync } from "node:fs";
import { xdpDetach } from "../../bpf/attach.ts";
import { removePinDir } from "../../bpf/pin.ts";
import type { Logger } from "../../log.ts";
import { listLinks } from "../../net/ip.ts";
import { overlayDeviceName } from "./facts.ts";
import { detachTc, ourXdp } from "./hooks.ts";
import { deleteOverlayDevice } from "./overlay.ts";

export interface CleanupOptions {
  readonly log: Logger;
  /** The node's bpffs pin directory. */
  readonly bpffs: string;
  readonly vni: number;
  /** The underlay interface (decap); all links are checked for our TC filters anyway. */
  readonly iface?: string;
  readonly bridge?: string;
}

export async function cleanupEbpfVxlan(o: CleanupOptions): Promise<void> {
  for (const l of await listLinks()) {
    for (const dir of ["ingress", "egress"] as const) {
      if (detachTc(l.ifindex, l.ifname, dir)) o.log.info("detached tc program", { iface: l.ifname, dir });
    }
    if (ourXdp(l.ifindex, l.ifname)) {
      xdpDetach(l.ifindex, l.ifname);
      o.log.info("detached xdp program", { iface: l.ifname });
    }
  }
  if (await deleteOverlayDevice(o.vni))
    o.log.info("deleted overlay device", { dev: overlayDeviceName(o.vni) });
  if (existsSync(o.bpffs)) {
    removePinDir(o.bpffs);
    o.log.info("removed pins", { dir: o.bpffs });
  }
}
