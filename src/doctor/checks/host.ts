/**
 * Doctor's checks of the node's own settings that decide whether pod packets are
 * forwarded at all: ip_forward, reverse-path filtering, br_netfilter where kube-proxy
 * needs it, a FORWARD policy that drops, and our masquerading table. Pure.
 */
import { formatCidr } from "../../config/cidr.ts";
import { NFT_TABLE } from "../../net/masq.ts";
import type { Facts } from "../facts.ts";
import {
  acceptsNetwork,
  chainName,
  droppingForwardChains,
  hasKubeProxy,
  hasTable,
  masqueradesNetwork,
} from "../nft-rules.ts";
import { LEGACY_FILTER } from "../parse.ts";
import { type Check, cannot, derive, firstFew, ok } from "./common.ts";

/** net.ipv4.ip_forward must be 1: pods are routed through the node. */
export function checkIpForward(f: Facts): Check {
  const id = "ip-forward";
  const v = f.sysctls["net.ipv4.ip_forward"] ?? null;
  const why = "with forwarding off the node drops every packet between pods and the overlay";
  if (v === "1") return ok(id, "net.ipv4.ip_forward=1", why);
  return {
    id,
    status: "problem",
    finding: `net.ipv4.ip_forward=${v ?? "unreadable"}`,
    why,
    fix: "tartan doctor --fix (sysctl -w net.ipv4.ip_forward=1; persist it in /etc/sysctl.d/)",
    fixable: v !== null,
  };
}

/** Effective reverse-path filtering on the underlay: max(all, iface). */
export function checkRpFilter(f: Facts): Check {
  const id = "rp-filter";
  const d = derive(f);
  const ifn = f.underlay.ok ? f.underlay.value.name : null;
  const why =
    "strict reverse-path filtering (1) drops packets whose source is not routed back through the interface they came in on: what the eBPF decap program hands to the stack (traffic for the node itself, pods not yet in its endpoint map) arrives on the underlay while remote pod subnets are routed via the overlay device";
  if (!ifn) return cannot(id, "underlay unknown", why, "give --iface=NAME");
  const all = f.sysctls["net.ipv4.conf.all.rp_filter"] ?? null;
  const dev = f.sysctls[`net.ipv4.conf.${ifn}.rp_filter`] ?? null;
  const eff = Math.max(Number(all ?? 0), Number(dev ?? 0));
  const what = `net.ipv4.conf.all.rp_filter=${all ?? "?"}, net.ipv4.conf.${ifn}.rp_filter=${dev ?? "?"} (effective ${eff})`;
  if (eff !== 1) return ok(id, `${what}: not strict`, why);
  const fix = `tartan doctor --fix (sysctl -w net.ipv4.conf.${ifn}.rp_filter=2: loose, as Cilium and the ebpf-vxlan backend set it)`;
  if (d.backend === "ebpf-vxlan")
    return {
      id,
      status: "problem",
      finding: `${what}: strict on ${ifn} breaks the eBPF decap path`,
      why,
      fix,
      fixable: true,
    };
  return {
    id,
    status: "warning",
    finding: `${what}: strict; harmless for ${d.backend ?? "this backend"} with symmetric routes, breaks ebpf-vxlan and asymmetric underlays`,
    why,
    fix,
    fixable: true,
  };
}

/** br_netfilter / bridge-nf-call-iptables, where kube-proxy needs it. */
export function checkBrNetfilter(f: Facts): Check {
  const id = "br-netfilter";
  const v = f.sysctls["net.bridge.bridge-nf-call-iptables"] ?? null;
  const kube = f.nft.ok && hasKubeProxy(f.nft.value);
  const why =
    "kube-proxy's Service rules are iptables rules; pod-to-pod traffic on the same bridge only passes them with br_netfilter loaded and bridge-nf-call-iptables=1, else Services to local pods break";
  if (v === "1") return ok(id, "net.bridge.bridge-nf-call-iptables=1", why);
  if (!kube)
    return ok(
      id,
      `${v === null ? "br_netfilter not loaded" : `net.bridge.bridge-nf-call-iptables=${v}`}; no kube-proxy rules on this node, nothing needs it`,
      why,
    );
  return {
    id,
    status: "problem",
    finding: `${v === null ? "br_netfilter is not loaded" : `net.bridge.bridge-nf-call-iptables=${v}`} while kube-proxy rules (KUBE-*) are present`,
    why,
    fix: "tartan doctor --fix (modprobe br_netfilter; sysctl -w net.bridge.bridge-nf-call-iptables=1; persist in /etc/modules-load.d and /etc/sysctl.d)",
    fixable: true,
  };
}

/** A forward chain that drops by policy must accept the cluster network. */
export function checkForwardPolicy(f: Facts): Check {
  const id = "forward-policy";
  const d = derive(f);
  const why =
    "a FORWARD policy of drop (Docker sets one) silently drops pod traffic between nodes unless the cluster network is accepted, as flanneld's FLANNEL-FWD rules do";
  if (!f.nft.ok) return cannot(id, `cannot read the ruleset: ${f.nft.error}`, why);
  if (!d.network) return cannot(id, "cannot check: no network config", why);
  const net = formatCidr(d.network);
  const drops = droppingForwardChains(f.nft.value);
  if (drops.length === 0) return ok(id, "no forward chain drops by policy", why);
  const problems: string[] = [];
  const warnings: string[] = [];
  for (const c of drops) {
    const s = acceptsNetwork(f.nft.value, c, "saddr", d.network);
    const t = acceptsNetwork(f.nft.value, c, "daddr", d.network);
    if (!s && !t)
      problems.push(`chain ${chainName(c)} drops by policy and accepts nothing from or to ${net}`);
    else if (!s) warnings.push(`chain ${chainName(c)} accepts ip daddr ${net} but not ip saddr ${net}`);
    else if (!t) warnings.push(`chain ${chainName(c)} accepts ip saddr ${net} but not ip daddr ${net}`);
  }
  const c0 = drops[0]!;
  const fix =
    c0.table === LEGACY_FILTER
      ? `tartan doctor --fix (iptables-legacy -I FORWARD 1 -s ${net} -j ACCEPT; iptables-legacy -I FORWARD 1 -d ${net} -j ACCEPT)`
      : `tartan doctor --fix (nft insert rule ${chainName(c0)} ip saddr ${net} accept; nft insert rule ${chainName(c0)} ip daddr ${net} accept)`;
  if (problems.length)
    return {
      id,
      status: "problem",
      finding: firstFew(problems, 2),
      why,
      fix,
      fixable: true,
      details: [...problems, ...warnings],
    };
  if (warnings.length)
    return {
      id,
      status: "warning",
      finding: firstFew(warnings, 2),
      why,
      fix,
      fixable: true,
      details: warnings,
    };
  return ok(id, `${drops.map(chainName).join(", ")} drop by policy but accept ${net} both ways`, why);
}

/** --ip-masq ⇒ table ip tartan with the masquerade rules; no --ip-masq ⇒ no leftover table. */
export function checkMasquerade(f: Facts): Check {
  const id = "masquerade";
  const d = derive(f);
  const why =
    "with --ip-masq, pods reach outside the cluster only through masquerading to the node's address; replies to pod addresses are not routed back";
  if (!f.nft.ok) return cannot(id, `cannot read the ruleset: ${f.nft.error}`, why);
  const present = hasTable(f.nft.value, "ip", NFT_TABLE);
  if (!f.settings.ipMasq) {
    if (present)
      return {
        id,
        status: "warning",
        finding: `table ip ${NFT_TABLE} is present but --ip-masq is off`,
        why: "a leftover table masquerades pod traffic nobody asked to masquerade",
        fix: `tartan doctor --fix (nft delete table ip ${NFT_TABLE}), or run the agent with --ip-masq`,
        fixable: true,
      };
    return ok(id, "--ip-masq is off and no table ip tartan exists", why);
  }
  if (!d.network) return cannot(id, "cannot check: no network config", why);
  if (present && masqueradesNetwork(f.nft.value, NFT_TABLE, d.network))
    return ok(id, `table ip ${NFT_TABLE} masquerades ${formatCidr(d.network)} leaving the cluster`, why);
  return {
    id,
    status: "problem",
    finding: present
      ? `table ip ${NFT_TABLE} has no masquerade rule for ${formatCidr(d.network)}`
      : `table ip ${NFT_TABLE} is missing though --ip-masq is on`,
    why,
    fix: "tartan doctor --fix re-applies it (the running agent also re-applies it within 5 s)",
    fixable: d.own !== null,
  };
}
