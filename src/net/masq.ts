/**
 * `--ip-masq` with nftables, in a table of Tartan's own (`ip tartan`; a dual-stack node
 * adds `ip6 tartan` with the same rules for the IPv6 network, as flanneld keeps a
 * separate `flannel-ipv6` table), with flanneld's semantics: pod↔cluster traffic
 * untouched; pods → outside the cluster masqueraded (not multicast); host → cluster
 * masqueraded; traffic arriving for our subnet from outside untouched; kube-proxy-marked
 * packets (0x4000) left to kube-proxy. Ports fully random. The tables are replaced in one
 * nft transaction: never half-applied.
 */
import { type Cidr, formatCidr } from "../config/cidr.ts";
import { type Cidr6, formatCidr6 } from "../config/cidr6.ts";
import { run } from "./exec.ts";

export const NFT_TABLE = "tartan";

/** One family's table: `ip` with IPv4 prefixes and multicast 224.0.0.0/4, `ip6` with IPv6 ones and ff00::/8. */
function familyRuleset(family: "ip" | "ip6", net: string, sn: string, multicast: string): string {
  return [
    `table ${family} ${NFT_TABLE} {`,
    "  chain postrouting {",
    "    type nat hook postrouting priority srcnat - 1; policy accept;",
    '    meta mark & 0x4000 == 0x4000 return comment "kube-proxy marked: no double NAT"',
    `    ${family} saddr ${net} ${family} daddr ${net} return comment "pod to pod: untouched"`,
    `    ${family} saddr != ${net} ${family} daddr ${sn} return comment "from outside to our pods: untouched"`,
    `    ${family} saddr ${net} ${family} daddr != ${multicast} masquerade fully-random comment "pods to outside the cluster"`,
    `    ${family} saddr != ${net} ${family} daddr ${net} masquerade fully-random comment "host to the cluster"`,
    "  }",
    "}",
  ].join("\n");
}

export function masqRuleset(network: Cidr, subnet: Cidr): string {
  return familyRuleset("ip", formatCidr(network), formatCidr(subnet), "224.0.0.0/4");
}

/** The same rules for a dual-stack node's IPv6 network, in `table ip6 tartan`. */
export function masqRuleset6(network6: Cidr6, subnet6: Cidr6): string {
  return familyRuleset("ip6", formatCidr6(network6), formatCidr6(subnet6), "ff00::/8");
}

function nft(args: string[], stdin?: string) {
  return run(["nft", ...args], stdin);
}

/** The IPv6 side of a dual-stack node's masquerading. */
export interface Masq6 {
  readonly network6: Cidr6;
  readonly subnet6: Cidr6;
}

/** Atomically (re)places the table(s): add-then-delete-then-define in one transaction. */
export async function applyMasq(network: Cidr, subnet: Cidr, v6: Masq6 | null = null): Promise<void> {
  let script = `add table ip ${NFT_TABLE}\ndelete table ip ${NFT_TABLE}\n${masqRuleset(network, subnet)}\n`;
  if (v6)
    script += `add table ip6 ${NFT_TABLE}\ndelete table ip6 ${NFT_TABLE}\n${masqRuleset6(v6.network6, v6.subnet6)}\n`;
  const r = await nft(["-f", "-"], script);
  if (r.code !== 0) throw new Error(`nft: applying the ip-masq table failed: ${r.stderr.trim()}`);
}

/** Is our table there with the masquerade rules for this network (and the IPv6 one, when given)? */
export async function masqPresent(network: Cidr, network6: Cidr6 | null = null): Promise<boolean> {
  const has = async (family: "ip" | "ip6", net: string) => {
    const r = await nft(["list", "table", family, NFT_TABLE]);
    return r.code === 0 && r.stdout.includes(`${family} saddr ${net}`) && r.stdout.includes("masquerade");
  };
  return (
    (await has("ip", formatCidr(network))) && (network6 === null || (await has("ip6", formatCidr6(network6))))
  );
}

/** Removes both families' tables; returns the ones there were ("ip tartan", "ip6 tartan"). */
export async function removeMasq(): Promise<string[]> {
  const removed: string[] = [];
  for (const family of ["ip", "ip6"])
    if ((await nft(["delete", "table", family, NFT_TABLE])).code === 0)
      removed.push(`${family} ${NFT_TABLE}`);
  return removed;
}

/**
 * The bridge CNI plugin masquerades through iptables; after the last pod's DEL it leaves
 * an empty `ip nat` table behind. Removes that table only when it holds no rule at all
 * (nothing else on the node uses it then). Returns whether it did.
 */
export async function removeEmptyNatTable(): Promise<boolean> {
  const r = await run(["nft", "-j", "list", "table", "ip", "nat"]);
  if (r.code !== 0) return false;
  const doc = JSON.parse(r.stdout) as { nftables?: Record<string, unknown>[] };
  if ((doc.nftables ?? []).some((o) => "rule" in o)) return false;
  return (await run(["nft", "delete", "table", "ip", "nat"])).code === 0;
}
