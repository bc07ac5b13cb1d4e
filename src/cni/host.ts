/**
 * The plugin's few reads and writes of the node's network (through iproute2, in the
 * namespace the plugin runs in): the bridge's IPv4 addresses, removing a stale one, and
 * a link's ifindex. `ip -json` is used instead of /sys so the answer is for the calling
 * process's network namespace.
 */
import type { BridgeAddr } from "./delegate-conf.ts";

export interface HostNet {
  /** IPv4 addresses of `dev`; null when the device does not exist. */
  bridgeAddrs(dev: string): Promise<BridgeAddr[] | null>;
  delAddr(dev: string, addr: BridgeAddr): Promise<void>;
  /** ifindex of `dev`; null when it does not exist. */
  ifindex(dev: string): Promise<number | null>;
}

async function ip(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const p = Bun.spawn(["ip", ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  return { code, out, err };
}

export const iproute2: HostNet = {
  async bridgeAddrs(dev) {
    const r = await ip(["-json", "-4", "addr", "show", "dev", dev]);
    if (r.code !== 0) return null;
    const rows = JSON.parse(r.out || "[]") as { addr_info?: { local: string; prefixlen: number }[] }[];
    return (rows[0]?.addr_info ?? []).map((a) => ({ ip: a.local, len: a.prefixlen }));
  },
  async delAddr(dev, addr) {
    const r = await ip(["addr", "del", `${addr.ip}/${addr.len}`, "dev", dev]);
    if (r.code !== 0) throw new Error(`ip addr del ${addr.ip}/${addr.len} dev ${dev}: ${r.err.trim()}`);
  },
  async ifindex(dev) {
    const r = await ip(["-json", "link", "show", "dev", dev]);
    if (r.code !== 0) return null;
    const rows = JSON.parse(r.out || "[]") as { ifindex?: number }[];
    return rows[0]?.ifindex ?? null;
  },
};
