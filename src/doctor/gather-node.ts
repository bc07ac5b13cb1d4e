/**
 * The node's own state for `tartan doctor`, read from the kernel and tools: links,
 * routes, neighbours and FDB entries (`ip -json`, `bridge`), sysctls, the firewall
 * (`nft -j`, legacy iptables), offloads (`ethtool -k`), the eBPF datapath's pins and
 * attach points, the CNI config directory, the IPv6 side, and pings to peers. gather.ts
 * puts these together with the agent's and the registry's view.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { overlayDeviceName } from "../backend/ebpf-vxlan/facts.ts";
import { vxlan6DeviceName } from "../backend/vxlan/facts.ts";
import { MAPS, SUBNET_LOCAL } from "../bpf/abi.ts";
import { formatCidr, formatIp4 } from "../config/cidr.ts";
import { formatCidr6, formatIp6 } from "../config/cidr6.ts";
import type { Lease } from "../lease/lease.ts";
import { errorText } from "../log.ts";
import { type FdbEntry, listRoutes, type Neigh, type Route } from "../net/ip.ts";
import { confKey, readSysctl } from "../net/sysctl.ts";
import { attempt } from "./attempt.ts";
import {
  type BpfFacts,
  type CniFacts,
  type Fact,
  fact,
  factError,
  type Ipv6Device,
  type Ipv6Facts,
  type LinkFacts,
  type ProbeResult,
  type UnderlayFacts,
} from "./facts.ts";
import { parseNftJson } from "./nft-rules.ts";
import {
  cniCandidates,
  parseCniFile,
  parseEthtoolFeatures,
  parseIptablesForward,
  parseLinks,
  parsePing,
} from "./parse.ts";

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export async function run(cmd: string[], timeoutMs = 10_000): Promise<Run> {
  try {
    const p = Bun.spawn(cmd, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    const t = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
    const [stdout, stderr, code] = await Promise.all([
      new Response(p.stdout).text(),
      new Response(p.stderr).text(),
      p.exited,
    ]);
    clearTimeout(t);
    return { code, stdout, stderr };
  } catch (e) {
    return { code: 127, stdout: "", stderr: errorText(e) };
  }
}

/** Every link with its addresses (`ip -json -details addr show`). */
export function readLinks(): Promise<Fact<readonly LinkFacts[]>> {
  return attempt(async () => {
    const res = await run(["ip", "-json", "-details", "addr", "show"]);
    if (res.code !== 0) throw new Error(`ip addr show: ${res.stderr.trim()}`);
    return parseLinks(res.stdout);
  });
}

/** `ip -json ARGS` (or another iproute2 tool's), its rows parsed; throws with the tool's stderr. */
export const ipJson: IpJson = async <T>(args: string[], tool = "ip"): Promise<T[]> => {
  const res = await run([tool, "-json", ...args]);
  if (res.code !== 0) throw new Error(`${tool} ${args.join(" ")}: ${res.stderr.trim()}`);
  return res.stdout.trim() ? (JSON.parse(res.stdout) as T[]) : [];
};

/** The firewall as nft sees it, plus legacy iptables' FORWARD chain where that table exists. */
async function readFirewall() {
  const res = await run(["nft", "-j", "list", "ruleset"]);
  if (res.code !== 0) throw new Error(`nft -j list ruleset: ${res.stderr.trim() || `exit ${res.code}`}`);
  const nft = parseNftJson(res.stdout);
  // legacy iptables rules are invisible to nft; read them only where their filter table
  // exists already (running iptables-legacy elsewhere would create it)
  const tables = await Bun.file("/proc/net/ip_tables_names")
    .text()
    .catch(() => "");
  if (!tables.split("\n").includes("filter")) return nft;
  const legacy = await run(["iptables-legacy", "-S", "FORWARD"]);
  if (legacy.code !== 0) return nft;
  const l = parseIptablesForward(legacy.stdout);
  return { chains: [...nft.chains, ...l.chains], rules: [...nft.rules, ...l.rules] };
}

export interface DatapathInput {
  readonly backend: string | null;
  /** The backend's overlay device, when there is a backend. */
  readonly overlay: string | null;
  readonly overlayExists: boolean;
  readonly links: Fact<readonly LinkFacts[]>;
  readonly underlay: Fact<UnderlayFacts>;
  readonly bpffs: string;
  readonly bridge: string;
}

/** The IPv4 datapath: routes, the vxlan device's entries and offloads, the firewall, the eBPF maps, sysctls. */
export async function gatherDatapath(i: DatapathInput) {
  const { backend, overlay, overlayExists, links, underlay } = i;
  const [routes, neighbours, fdb, nft, offload, bpf] = await Promise.all([
    attempt(() => listRoutes()),
    overlayExists && backend === "vxlan"
      ? attempt(() => ipJson<Neigh>(["-4", "neigh", "show", "dev", overlay!]))
      : Promise.resolve(fact<readonly Neigh[]>([])),
    overlayExists && backend === "vxlan"
      ? attempt(() => ipJson<FdbEntry>(["fdb", "show", "dev", overlay!], "bridge"))
      : Promise.resolve(fact<readonly FdbEntry[]>([])),
    attempt(readFirewall),
    overlayExists && backend === "vxlan"
      ? attempt(async () => {
          const res = await run(["ethtool", "-k", overlay!]);
          if (res.code !== 0) throw new Error(res.stderr.trim() || `exit ${res.code}`);
          return parseEthtoolFeatures(res.stdout);
        })
      : Promise.resolve(fact<Record<string, string>>({})),
    backend === "ebpf-vxlan"
      ? attempt(() =>
          readBpf(i.bpffs, links, [underlay.ok ? underlay.value.name : "", overlay ?? "", i.bridge]),
        )
      : Promise.resolve(factError<BpfFacts>("not an ebpf-vxlan node")),
  ]);

  const sysctls: Record<string, string | null> = {
    "net.ipv4.ip_forward": sysctl("net.ipv4.ip_forward"),
    "net.ipv4.conf.all.rp_filter": sysctl(confKey("all", "rp_filter")),
    "net.bridge.bridge-nf-call-iptables": sysctl("net.bridge.bridge-nf-call-iptables"),
  };
  if (underlay.ok)
    sysctls[`net.ipv4.conf.${underlay.value.name}.rp_filter`] = sysctl(
      confKey(underlay.value.name, "rp_filter"),
    );
  return { routes, neighbours, fdb, nft, offload, bpf, sysctls };
}

export function sysctl(key: string): string | null {
  try {
    return readSysctl(key);
  } catch {
    return null;
  }
}

export function readCni(dir: string): CniFacts {
  if (!existsSync(dir)) return { dir, exists: false, files: [] };
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    return { dir, exists: true, files: [{ name: ".", types: [], invalid: errorText(e) }] };
  }
  const files = cniCandidates(names).map((n) => {
    try {
      return parseCniFile(n, readFileSync(join(dir, n), "utf8"));
    } catch (e) {
      return { name: n, types: [], invalid: errorText(e) };
    }
  });
  return { dir, exists: true, files };
}

/**
 * The eBPF datapath through its pins (maps decoded with the ABI's codecs) and libbpf's
 * attach queries on the links the backend attaches to (`onLinks`: underlay, overlay, bridge).
 */
async function readBpf(
  bpffs: string,
  links: Fact<readonly LinkFacts[]>,
  onLinks: readonly string[],
): Promise<BpfFacts> {
  const {
    attachedPrograms,
    listPins,
    pinnedProgramIds,
    readMember6Map,
    readMemberMap,
    readSubnet6Map,
    readSubnetMap,
  } = await import("../backend/ebpf-vxlan/inspect.ts");
  if (!links.ok) throw new Error(`cannot list links: ${links.error}`);
  const pinned = <T>(what: string, read: () => T | null): Fact<T> => {
    try {
      const v = read();
      return v === null ? factError(`${what} is not pinned under ${bpffs}`) : fact(v);
    } catch (e) {
      return factError(`${what}: ${errorText(e)}`);
    }
  };
  return {
    pins: listPins(bpffs),
    pinnedProgIds: pinnedProgramIds(bpffs),
    attachments: attachedPrograms(links.value.filter((l) => onLinks.includes(l.name))),
    subnets: pinned(
      MAPS.subnets,
      () =>
        readSubnetMap(bpffs)?.map(([k, v]) => ({
          subnet: `${formatIp4(k.addr)}/${k.prefixLen}`,
          nodeIp: formatIp4(v.nodeIp),
          vtepMac: v.vtepMac,
          local: (v.flags & SUBNET_LOCAL) !== 0,
        })) ?? null,
    ),
    members: pinned(MAPS.members, () => {
      const m = readMemberMap(bpffs);
      return m === null ? null : Object.fromEntries(m.map(([ip4, n]) => [formatIp4(ip4), n]));
    }),
    subnets6: pinned(
      MAPS.subnets6,
      () =>
        readSubnet6Map(bpffs)?.map(([k, v]) => ({
          subnet: formatCidr6({ ip: k.addr, len: k.prefixLen }),
          nodeIp: formatIp6(v.nodeIp6),
          vtepMac: v.vtepMac,
          local: (v.flags & SUBNET_LOCAL) !== 0,
        })) ?? null,
    ),
    members6: pinned(MAPS.members6, () => {
      const m = readMember6Map(bpffs);
      return m === null ? null : Object.fromEntries(m.map(([ip6, n]) => [formatIp6(ip6), n]));
    }),
  };
}

export async function probePeer(l: Lease, target: string, timeoutS: number): Promise<ProbeResult> {
  const r = await run(
    ["ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", String(timeoutS), target],
    (timeoutS + 3) * 1000,
  );
  const s = parsePing(r.stdout);
  return {
    lease: formatCidr(l.subnet),
    publicIp: formatIp4(l.attrs.publicIp),
    target,
    ok: s.received > 0,
    rttMs: s.avgMs,
    error: s.received > 0 ? null : r.stderr.trim().split("\n")[0] || null,
  };
}

export type IpJson = <T>(args: string[], tool?: string) => Promise<T[]>;

/** The IPv6 overlay device as `ip -json -details addr show` has it; null when there is none. */
async function readIpv6Device(name: string, ipJsonOn: IpJson): Promise<Ipv6Device | null> {
  let rows: {
    ifname: string;
    mtu: number;
    address?: string;
    flags?: string[];
    linkinfo?: { info_kind?: string; info_data?: Record<string, unknown> };
    addr_info?: { family: string; local: string; prefixlen: number; scope?: string }[];
  }[];
  try {
    rows = await ipJsonOn(["-details", "addr", "show", "dev", name]);
  } catch (e) {
    if (/does not exist|Cannot find device/.test(errorText(e))) return null;
    throw e;
  }
  const r = rows[0];
  if (!r) return null;
  const kind = r.linkinfo?.info_kind ?? null;
  return {
    name: r.ifname,
    kind,
    mtu: r.mtu,
    mac: r.address ?? "",
    up: (r.flags ?? []).includes("UP"),
    vxlan: kind === "vxlan" ? ((r.linkinfo?.info_data ?? {}) as Ipv6Device["vxlan"]) : null,
    addrs: (r.addr_info ?? [])
      .filter((a) => a.family === "inet6" && a.scope === "global")
      .map((a) => `${a.local}/${a.prefixlen}`),
  };
}

/** A dual-stack node's IPv6 side: forwarding, routes, and the vxlan backend's IPv6 device with its entries. */
export async function gatherIpv6(
  backend: string | null,
  vni: number,
  underlayIp: string | null,
  ipJsonOn: IpJson,
): Promise<Ipv6Facts> {
  // vxlan: flannel-v6.<VNI>; ebpf-vxlan: its overlay device carries IPv6 too (no entries on it)
  const dev =
    backend === "vxlan" ? vxlan6DeviceName(vni) : backend === "ebpf-vxlan" ? overlayDeviceName(vni) : null;
  const device = await attempt(() => (dev ? readIpv6Device(dev, ipJsonOn) : null));
  const present = backend === "vxlan" && device.ok && device.value !== null;
  const [routes, neighbours, fdb] = await Promise.all([
    attempt(() => ipJsonOn<Route>(["-6", "route", "show"])),
    present
      ? attempt(() => ipJsonOn<Neigh>(["-6", "neigh", "show", "dev", dev!]))
      : Promise.resolve(fact<Neigh[]>([])),
    present
      ? attempt(() => ipJsonOn<FdbEntry>(["fdb", "show", "dev", dev!], "bridge"))
      : Promise.resolve(fact<FdbEntry[]>([])),
  ]);
  return { forwarding: sysctl("net.ipv6.conf.all.forwarding"), underlayIp, routes, device, neighbours, fdb };
}

/**
 * Pings running at once: one per peer at once was thousands of processes on a large
 * cluster (6,600 measured at 10,000 peers, the agent's RSS +70 MiB while they ran).
 */
export const PROBES_AT_ONCE = 64;

/** `fn` over `items`, at most `limit` at a time, results in order. */
export async function inBatches<T, R>(
  items: readonly T[],
  limit: number,
  fn: (t: T) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
