/**
 * The vxlan backend's devices, `flannel.<VNI>` and in a dual-stack network
 * `flannel-v6.<VNI>`, as flanneld makes them: a kernel vxlan device on the underlay with
 * our VNI, port and local address (IPv4, or IPv6 for the second), learning off, the pods'
 * MTU and a MAC that survives restarts. A device that matches is adopted; one that does
 * not is recreated, keeping the MAC peers already know.
 */
import { formatIp4 } from "../../config/cidr.ts";
import type { Logger } from "../../log.ts";
import { deleteLink, ip, ipJson } from "../../net/ip.ts";
import type { ExternalInterface } from "../backend.ts";
import { stableVtepMac } from "./facts.ts";

interface VxlanInfo {
  id?: number;
  local?: string;
  local6?: string;
  link?: string;
  port?: number;
  learning?: boolean;
}

export interface VxlanDeviceOptions {
  readonly device: string;
  readonly vni: number;
  readonly port: number;
  readonly extIface: ExternalInterface;
  readonly mtu: number;
  /** The MAC our lease announces ("" before the first prepare). */
  readonly mac: string;
  readonly log: Logger;
  /** The device's local address: the underlay's IPv4 address unless given (the IPv6 device's). */
  readonly local?: string;
  /** The MAC a new device gets when none was announced: the IPv4 device's stable one unless given. */
  readonly stableMac?: string;
}

/** Creates or adopts the device; returns the MAC it carries and whether this call created it. */
export async function ensureVxlanDevice(o: VxlanDeviceOptions): Promise<{ mac: string; created: boolean }> {
  const { device, vni, extIface, mtu, mac, log } = o;
  const want = { id: vni, local: o.local ?? formatIp4(extIface.ifaceIp), port: o.port };
  const rows = await ipJson<{
    address?: string;
    mtu: number;
    linkinfo?: { info_kind?: string; info_data?: VxlanInfo };
  }>("-details", "link", "show", "dev", device).catch(() => []);
  const cur = rows[0];
  if (cur) {
    const d = cur.linkinfo?.info_data ?? {};
    const same =
      cur.linkinfo?.info_kind === "vxlan" &&
      d.id === want.id &&
      (d.local ?? d.local6) === want.local &&
      d.port === want.port &&
      d.learning === false;
    if (same) {
      if (cur.mtu !== mtu) await ip("link", "set", "dev", device, "mtu", String(mtu));
      // someone changed the MAC we announced: peers' FDB entries point at the old one
      if (mac && cur.address !== mac) {
        log.warn("vxlan device MAC differs from the one in our lease; restoring it", {
          device,
          have: cur.address,
          want: mac,
        });
        await ip("link", "set", "dev", device, "address", mac);
        await ip("link", "set", "dev", device, "up");
        return { mac, created: false };
      }
      await ip("link", "set", "dev", device, "up");
      log.info("adopted existing vxlan device", { device, mac: cur.address, mtu });
      return { mac: cur.address ?? "", created: false };
    }
    log.warn("vxlan device exists with different attributes; recreating it", {
      device,
      have: JSON.stringify(d),
      want: JSON.stringify(want),
    });
    await deleteLink(device);
  }
  // keep the MAC we announced (or of the device we replace), so peers' FDB entries stay right
  const newMac = cur?.address ?? (mac || (o.stableMac ?? stableVtepMac(extIface.publicIp, vni)));
  await ip(
    "link",
    "add",
    device,
    "type",
    "vxlan",
    "id",
    String(vni),
    "local",
    want.local,
    "dev",
    extIface.name,
    "dstport",
    String(want.port),
    "nolearning",
  );
  await ip("link", "set", "dev", device, "address", newMac, "mtu", String(mtu), "up");
  log.info("created vxlan device", { device, vni, mac: newMac, mtu, dev: extIface.name, port: want.port });
  return { mac: newMac, created: true };
}
