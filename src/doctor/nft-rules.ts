/**
 * Reading the firewall the way the kernel applies it, from `nft -j list ruleset`
 * (iptables-nft rules appear there too): which forward base chains drop by policy,
 * whether a chain accepts the cluster network, whether kube-proxy is present, and
 * whether Tartan's masquerade table is in place. Pure.
 */
import { type Cidr, containsCidr, formatCidr, parseCidr } from "../config/cidr.ts";
import { type Cidr6, cidr6Equals, parseCidr6 } from "../config/cidr6.ts";
import type { NftChain, NftFacts, NftRule } from "./facts.ts";

interface RawRow {
  chain?: { family: string; table: string; name: string; hook?: string; policy?: string };
  rule?: { family: string; table: string; chain: string; expr?: Record<string, unknown>[] };
}

/** Parses `nft -j list ruleset` output into chains and rules. */
export function parseNftJson(text: string): NftFacts {
  const doc = JSON.parse(text || '{"nftables":[]}') as { nftables?: RawRow[] };
  const chains: NftChain[] = [];
  const rules: NftRule[] = [];
  for (const row of doc.nftables ?? []) {
    if (row.chain)
      chains.push({
        family: row.chain.family,
        table: row.chain.table,
        name: row.chain.name,
        hook: row.chain.hook ?? null,
        policy: row.chain.policy ?? null,
      });
    if (row.rule)
      rules.push({
        family: row.rule.family,
        table: row.rule.table,
        chain: row.rule.chain,
        expr: row.rule.expr ?? [],
      });
  }
  return { chains, rules };
}

export function chainName(c: { family: string; table: string; name: string }): string {
  return `${c.family} ${c.table} ${c.name}`;
}

/** Base chains on the forward hook whose policy drops. */
export function droppingForwardChains(nft: NftFacts): NftChain[] {
  return nft.chains.filter((c) => c.hook === "forward" && c.policy === "drop");
}

type Match = { op?: string; left?: unknown; right?: unknown };

/** The CIDR an `ip saddr|daddr == X` match compares with, or null. */
function matchedCidr(m: Match, field: "saddr" | "daddr"): Cidr | null {
  const left = m.left as { payload?: { protocol?: string; field?: string } } | undefined;
  if (m.op !== "==" || left?.payload?.protocol !== "ip" || left.payload.field !== field) return null;
  const r = m.right as string | { prefix?: { addr: string; len: number } } | undefined;
  if (typeof r === "string") return parseCidr(r.includes("/") ? r : `${r}/32`, false);
  if (r && typeof r === "object" && r.prefix) return parseCidr(`${r.prefix.addr}/${r.prefix.len}`, false);
  return null;
}

/** Expression keys that do not narrow what a rule matches. */
const NEUTRAL = new Set(["counter", "log", "comment", "accept"]);

/**
 * Does `chain` have a rule that accepts every packet whose `field` lies in `net`
 * (a match on a prefix covering the network, nothing else narrowing it)?
 */
export function acceptsNetwork(nft: NftFacts, chain: NftChain, field: "saddr" | "daddr", net: Cidr): boolean {
  return nft.rules.some((r) => {
    if (r.family !== chain.family || r.table !== chain.table || r.chain !== chain.name) return false;
    if (!r.expr.some((e) => "accept" in e)) return false;
    let covers = false;
    for (const e of r.expr) {
      const key = Object.keys(e)[0] ?? "";
      if (key === "match") {
        const c = matchedCidr(e.match as Match, field);
        if (c && containsCidr(c, net)) covers = true;
        else return false;
      } else if (!NEUTRAL.has(key)) return false;
    }
    return covers;
  });
}

/** kube-proxy leaves KUBE-* chains (iptables modes) or a kube-proxy table (nftables mode). */
export function hasKubeProxy(nft: NftFacts): boolean {
  return nft.chains.some((c) => c.name.startsWith("KUBE-") || c.table === "kube-proxy");
}

/** Is table `ip <table>` there with a masquerade rule for traffic from `net`? */
export function masqueradesNetwork(nft: NftFacts, table: string, net: Cidr): boolean {
  return nft.rules.some(
    (r) =>
      r.family === "ip" &&
      r.table === table &&
      r.expr.some((e) => "masquerade" in e) &&
      r.expr.some((e) => {
        if (!("match" in e)) return false;
        const c = matchedCidr(e.match as Match, "saddr");
        return c !== null && formatCidr(c) === formatCidr(net);
      }),
  );
}

export function hasTable(nft: NftFacts, family: string, table: string): boolean {
  return nft.chains.some((c) => c.family === family && c.table === table);
}

/** Is table `ip6 <table>` there with a masquerade rule for traffic from the IPv6 network `net`? */
export function masqueradesNetwork6(nft: NftFacts, table: string, net: Cidr6): boolean {
  return nft.rules.some(
    (r) =>
      r.family === "ip6" &&
      r.table === table &&
      r.expr.some((e) => "masquerade" in e) &&
      r.expr.some((e) => {
        if (!("match" in e)) return false;
        const m = e.match as Match;
        const left = m.left as { payload?: { protocol?: string; field?: string } } | undefined;
        if (m.op !== "==" || left?.payload?.protocol !== "ip6" || left.payload.field !== "saddr")
          return false;
        const p = (m.right as { prefix?: { addr: string; len: number } } | undefined)?.prefix;
        const c = p ? parseCidr6(`${p.addr}/${p.len}`, false) : null;
        return c !== null && cidr6Equals(c, net);
      }),
  );
}
