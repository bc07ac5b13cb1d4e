/**
 * Kernel network state through iproute2: links, addresses, routes, neighbours and
 * bridge FDB entries, read with `ip -json` and changed with `ip` / `ip -batch`.
 * Commands run in the caller's network namespace. Small typed wrappers; failures are
 * `IpError`s naming the command and iproute2's message.
 */

import { run } from "./exec.ts";

export class IpError extends Error {
  constructor(
    readonly command: string,
    readonly stderr: string,
    readonly code: number,
  ) {
    super(`${command}: ${stderr.trim() || `exit ${code}`}`);
    this.name = "IpError";
  }
}

async function exec(cmd: string[], stdin?: string): Promise<string> {
  const r = await run(cmd, stdin);
  if (r.code !== 0) throw new IpError(cmd.join(" "), r.stderr, r.code);
  return r.stdout;
}

/** Runs `ip ARGS`; returns stdout. */
export function ip(...args: string[]): Promise<string> {
  return exec(["ip", ...args]);
}

/** Runs `ip -json ARGS` and parses the array it prints (empty output → []). */
export async function ipJson<T>(...args: string[]): Promise<T[]> {
  const out = (await exec(["ip", "-json", ...args])).trim();
  return out ? (JSON.parse(out) as T[]) : [];
}

/** Runs many `ip` commands in one process (`ip -batch -`); `force` keeps going after errors. */
export async function ipBatch(lines: readonly string[], force = false): Promise<void> {
  if (lines.length === 0) return;
  await exec(["ip", ...(force ? ["-force"] : []), "-batch", "-"], `${lines.join("\n")}\n`);
}

export interface Link {
  readonly ifindex: number;
  readonly ifname: string;
  readonly mtu: number;
  readonly address: string;
  readonly flags: readonly string[];
  readonly master?: string;
  /** "veth", "bridge", "dummy", "vxlan", ... (absent for plain devices) */
  readonly kind?: string;
}

interface LinkJson {
  ifindex: number;
  ifname: string;
  mtu: number;
  address?: string;
  flags?: string[];
  master?: string;
  linkinfo?: { info_kind?: string };
}

function toLink(j: LinkJson): Link {
  return {
    ifindex: j.ifindex,
    ifname: j.ifname,
    mtu: j.mtu,
    address: j.address ?? "",
    flags: j.flags ?? [],
    master: j.master,
    kind: j.linkinfo?.info_kind,
  };
}

/** The link called `name`, or null. */
export async function getLink(name: string): Promise<Link | null> {
  try {
    const rows = await ipJson<LinkJson>("-details", "link", "show", "dev", name);
    return rows[0] ? toLink(rows[0]) : null;
  } catch (e) {
    if (e instanceof IpError && /does not exist|Cannot find device/.test(e.stderr)) return null;
    throw e;
  }
}

/** Links, optionally only the ports of bridge `master`. */
export async function listLinks(opts: { master?: string } = {}): Promise<Link[]> {
  const args = ["-details", "link", "show"];
  if (opts.master) args.push("master", opts.master);
  try {
    return (await ipJson<LinkJson>(...args)).map(toLink);
  } catch (e) {
    if (opts.master && e instanceof IpError && /does not exist|Cannot find device/.test(e.stderr)) return [];
    throw e;
  }
}

export async function deleteLink(name: string): Promise<boolean> {
  try {
    await ip("link", "del", "dev", name);
    return true;
  } catch (e) {
    if (e instanceof IpError && /does not exist|Cannot find device/.test(e.stderr)) return false;
    throw e;
  }
}

export interface Addr {
  readonly local: string;
  readonly prefixlen: number;
  readonly family: "inet" | "inet6";
  readonly scope?: string;
}

export async function listAddrs(dev: string): Promise<Addr[]> {
  const rows = await ipJson<{ addr_info?: Addr[] }>("addr", "show", "dev", dev);
  return rows.flatMap((r) => r.addr_info ?? []);
}

export interface Route {
  readonly dst: string;
  readonly dev?: string;
  readonly gateway?: string;
  readonly prefsrc?: string;
  readonly flags?: readonly string[];
  readonly protocol?: string;
  readonly scope?: string;
}

export async function listRoutes(opts: { dev?: string; table?: string } = {}): Promise<Route[]> {
  const args = ["route", "show"];
  if (opts.table) args.push("table", opts.table);
  if (opts.dev) args.push("dev", opts.dev);
  return ipJson<Route>(...args);
}

export interface Neigh {
  readonly dst: string;
  readonly dev?: string;
  readonly lladdr?: string;
  readonly state?: readonly string[];
}

/** Neighbours of both families on `dev` (IPv4 and IPv6 pods on a dual-stack bridge). */
export async function listNeighbours(dev: string): Promise<Neigh[]> {
  return ipJson<Neigh>("neigh", "show", "dev", dev);
}

export interface FdbEntry {
  readonly mac: string;
  readonly ifname?: string;
  readonly flags?: readonly string[];
  readonly state?: string;
  readonly master?: string;
  readonly vlan?: number;
}

/** The FDB of bridge `bridge` (learned and static entries). */
export async function listFdb(bridge: string): Promise<FdbEntry[]> {
  const out = (await exec(["bridge", "-json", "fdb", "show", "br", bridge])).trim();
  return out ? (JSON.parse(out) as FdbEntry[]) : [];
}

/** FDB entries on one device (e.g. a vxlan device). */
export async function listFdbOfDev(dev: string): Promise<FdbEntry[]> {
  const out = (await exec(["bridge", "-json", "fdb", "show", "dev", dev])).trim();
  return out ? (JSON.parse(out) as FdbEntry[]) : [];
}
