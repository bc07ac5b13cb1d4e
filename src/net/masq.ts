/**
 * `--ip-masq` with nftables, in a table of Tartan's own (`ip tartan`), with flanneld's
 * semantics: pod↔cluster traffic untouched; pods → outside the cluster masqueraded
 * (not multicast); host → cluster masqueraded; traffic arriving for our subnet from
 * outside untouched; kube-proxy-marked packets (0x4000) left to kube-proxy. Ports fully
 * random. The whole table is replaced in one nft transaction: never half-applied.
 */
import { type Cidr, formatCidr } from "../config/cidr.ts";
import { run } from "./exec.ts";

export const NFT_TABLE = "tartan";

export function masqRuleset(network: Cidr, subnet: Cidr): string {
  const net = formatCidr(network);
  const sn = formatCidr(subnet);
  return [
    `table ip ${NFT_TABLE} {`,
    "  chain postrouting {",
    "    type nat hook postrouting priority srcnat - 1; policy accept;",
    '    meta mark & 0x4000 == 0x4000 return comment "kube-proxy marked: no double NAT"',
    `    ip saddr ${net} ip daddr ${net} return comment "pod to pod: untouched"`,
    `    ip saddr != ${net} ip daddr ${sn} return comment "from outside to our pods: untouched"`,
    `    ip saddr ${net} ip daddr != 224.0.0.0/4 masquerade fully-random comment "pods to outside the cluster"`,
    `    ip saddr != ${net} ip daddr ${net} masquerade fully-random comment "host to the cluster"`,
    "  }",
    "}",
  ].join("\n");
}

function nft(args: string[], stdin?: string) {
  return run(["nft", ...args], stdin);
}

/** Atomically (re)places the table: add-then-delete-then-define in one transaction. */
export async function applyMasq(network: Cidr, subnet: Cidr): Promise<void> {
  const script = `add table ip ${NFT_TABLE}\ndelete table ip ${NFT_TABLE}\n${masqRuleset(network, subnet)}\n`;
  const r = await nft(["-f", "-"], script);
  if (r.code !== 0) throw new Error(`nft: applying the ip-masq table failed: ${r.stderr.trim()}`);
}

/** Is our table there with the masquerade rules for this network? */
export async function masqPresent(network: Cidr): Promise<boolean> {
  const r = await nft(["list", "table", "ip", NFT_TABLE]);
  return (
    r.code === 0 && r.stdout.includes(`ip saddr ${formatCidr(network)}`) && r.stdout.includes("masquerade")
  );
}

export async function removeMasq(): Promise<boolean> {
  const r = await nft(["delete", "table", "ip", NFT_TABLE]);
  return r.code === 0;
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
