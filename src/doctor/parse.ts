/**
 * Parsers for the outputs doctor reads — `ethtool -k`, `ping`, CNI config files,
 * `ip -json -details addr show`, `iptables-legacy -S` — into the shapes of `facts.ts`.
 * Pure, so each format is unit-tested from captured text. (The eBPF maps are not parsed
 * here: doctor reads them through their pins with the ABI's codecs.)
 */
import type { CniFile, LinkFacts, NftFacts, VxlanInfo } from "./facts.ts";

/** `ethtool -k DEV` → feature → "on" | "off" (the "[fixed]" marker dropped). */
export function parseEthtoolFeatures(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^\s*([a-z0-9-]+):\s+(on|off)\b/.exec(line);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

export interface PingSummary {
  readonly received: number;
  readonly avgMs: number | null;
}

/** `ping -q` summary: packets received and the average round trip. */
export function parsePing(text: string): PingSummary {
  const rec = /(\d+) (?:packets )?received/.exec(text);
  const rtt = /= [\d.]+\/([\d.]+)\/[\d.]+/.exec(text);
  return { received: rec ? Number(rec[1]) : 0, avgMs: rtt ? Number(rtt[1]) : null };
}

/** One CNI config file: the plugin types it names, or why it is invalid. */
export function parseCniFile(name: string, text: string): CniFile {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    return { name, types: [], invalid: `not JSON (${(e as Error).message})` };
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc))
    return { name, types: [], invalid: "not a JSON object" };
  const o = doc as { type?: unknown; plugins?: unknown };
  if (Array.isArray(o.plugins)) {
    const types = o.plugins
      .map((p) => (p && typeof p === "object" ? (p as { type?: unknown }).type : undefined))
      .filter((t): t is string => typeof t === "string");
    return types.length
      ? { name, types, invalid: null }
      : { name, types: [], invalid: "plugins name no type" };
  }
  if (typeof o.type === "string") return { name, types: [o.type], invalid: null };
  return { name, types: [], invalid: 'neither "type" nor "plugins"' };
}

/** File names a CNI runtime reads, in the order it tries them (libcni: sorted, these extensions). */
export function cniCandidates(names: readonly string[]): string[] {
  return names.filter((n) => /\.(conf|conflist|json)$/.test(n)).sort();
}

interface AddrJson {
  ifindex: number;
  ifname: string;
  mtu: number;
  address?: string;
  flags?: string[];
  master?: string;
  linkinfo?: { info_kind?: string; info_data?: VxlanInfo };
  addr_info?: { family: string; local: string; prefixlen: number }[];
}

/** `ip -json -details addr show` → links with their kind, vxlan attributes and IPv4 addresses. */
export function parseLinks(json: string): LinkFacts[] {
  const rows = JSON.parse(json || "[]") as AddrJson[];
  return rows.map((r) => {
    const kind = r.linkinfo?.info_kind ?? null;
    const d = r.linkinfo?.info_data;
    return {
      name: r.ifname,
      ifindex: r.ifindex,
      kind,
      mtu: r.mtu,
      mac: r.address ?? "",
      up: (r.flags ?? []).includes("UP"),
      master: r.master ?? null,
      vxlan:
        kind === "vxlan" && d
          ? { id: d.id, local: d.local, port: d.port, learning: d.learning, link: d.link }
          : null,
      addrs: (r.addr_info ?? []).filter((a) => a.family === "inet").map((a) => `${a.local}/${a.prefixlen}`),
    };
  });
}

/** The table name legacy iptables chains get in the facts, so reports and --fix can tell them apart. */
export const LEGACY_FILTER = "filter (iptables-legacy)";

/**
 * `iptables-legacy -S FORWARD` → the same shape as the nft ruleset: the policy, and the
 * `-s NET -j ACCEPT` / `-d NET -j ACCEPT` rules as matches (other rules carry an opaque
 * expression, so they never count as accepting the network). Legacy rules are invisible to nft.
 */
export function parseIptablesForward(text: string): NftFacts {
  const chain = { family: "ip", table: LEGACY_FILTER, name: "FORWARD" };
  let policy: string | null = null;
  const rules: NftFacts["rules"][number][] = [];
  for (const line of text.split("\n")) {
    const p = /^-P FORWARD (\w+)/.exec(line);
    if (p) policy = p[1]!.toLowerCase();
    if (!line.startsWith("-A FORWARD ")) continue;
    const m = /^-A FORWARD -([sd]) (\d+\.\d+\.\d+\.\d+)(?:\/(\d+))? -j ACCEPT$/.exec(line.trim());
    const expr: Record<string, unknown>[] = m
      ? [
          {
            match: {
              op: "==",
              left: { payload: { protocol: "ip", field: m[1] === "s" ? "saddr" : "daddr" } },
              right: { prefix: { addr: m[2], len: Number(m[3] ?? 32) } },
            },
          },
          { accept: null },
        ]
      : [{ iptables: line.trim() }];
    rules.push({ ...chain, chain: "FORWARD", expr });
  }
  return { chains: [{ ...chain, hook: "forward", policy }], rules };
}
