/**
 * `tartan doctor --fix`: the safe repairs, one per fixable check, each reporting
 * exactly what it changed. Safe means: it restores what the lease, the network config
 * and the flags already say (bridge address, subnet.env, missing or stale datapath
 * entries, overlay MTU, sysctls, our own nft table, accept rules for the cluster
 * network) and never deletes anything that is not ours or not stale. Anything else
 * (a misconfigured device, a detached eBPF program) is left to an agent restart.
 */
import { routeLine, vtepAddress, vtepAddress6 } from "../backend/facts.ts";
import { hostGwRoute, hostGwRoute6 } from "../backend/host-gw/facts.ts";
import { dualStackMtu, isVxlan6Peer } from "../backend/vxlan/facts.ts";
import { addLines, entriesOf } from "../backend/vxlan/plan.ts";
import { firstHost, formatCidr, formatIp4 } from "../config/cidr.ts";
import { firstHost6, formatIp6 } from "../config/cidr6.ts";
import { writeSubnetEnv } from "../config/subnet-env.ts";
import { errorText } from "../log.ts";
import { applyBatch, removeBatch } from "../net/batch.ts";
import { ip } from "../net/ip.ts";
import { applyMasq, NFT_TABLE, removeMasq } from "../net/masq.ts";
import { routeLookup } from "../net/routes.ts";
import { confKey, readSysctl, writeSysctl } from "../net/sysctl.ts";
import {
  type Check,
  derive,
  ipv6Peers,
  missing6For,
  missingFor,
  staleEntries,
  vxlanPlanInput,
  vxlanPlanInput6,
} from "./checks.ts";
import type { Facts } from "./facts.ts";
import { acceptsNetwork, chainName, droppingForwardChains } from "./nft-rules.ts";
import { LEGACY_FILTER } from "./parse.ts";
import type { FixResult } from "./report.ts";

/** Pushes each change to `changed` as it is made (so a failure midway still reports what was done), or returns them. */
type Repair = (f: Facts, c: Check, changed: string[]) => Promise<string[] | undefined>;

async function run(cmd: string[]): Promise<void> {
  const p = Bun.spawn(cmd, { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  const [err, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`${cmd.join(" ")}: ${err.trim() || `exit ${code}`}`);
}

const REPAIRS: Record<string, Repair> = {
  async bridge(f, _c, changed) {
    const own = f.ownLease!;
    const br = f.settings.bridge;
    const link = f.links.ok ? f.links.value.find((l) => l.name === br) : undefined;
    if (!link) return [];
    const want = `${formatIp4(firstHost(own.subnet))}/${own.subnet.len}`;
    for (const a of link.addrs.filter((x) => x !== want)) {
      await ip("addr", "del", a, "dev", br);
      changed.push(`ip addr del ${a} dev ${br}`);
    }
    if (!link.addrs.includes(want)) {
      await ip("addr", "add", want, "dev", br);
      changed.push(`ip addr add ${want} dev ${br}`);
    }
    if (!link.up) {
      await ip("link", "set", "dev", br, "up");
      changed.push(`ip link set ${br} up`);
    }
    return undefined;
  },

  async "subnet-env"(f) {
    const d = derive(f);
    const c6 = f.config.ok ? (f.config.value.ipv6 ?? null) : null;
    const sn6 = c6 ? (d.own!.subnet6 ?? null) : null;
    const v6 = c6 && sn6 ? { network6: c6.network, subnet6: sn6 } : {};
    const env = {
      network: d.network!,
      subnet: d.own!.subnet,
      ...v6,
      mtu: d.podMtu!,
      ipMasq: f.settings.ipMasq,
    };
    writeSubnetEnv(f.settings.subnetFile, env);
    const v6text = sn6 ? ` FLANNEL_IPV6_SUBNET=${formatIp6(firstHost6(sn6))}/${sn6.len}` : "";
    return [
      `wrote ${f.settings.subnetFile}: FLANNEL_NETWORK=${formatCidr(env.network)} FLANNEL_SUBNET=${formatIp4(firstHost(env.subnet))}/${env.subnet.len}${v6text} FLANNEL_MTU=${env.mtu} FLANNEL_IPMASQ=${env.ipMasq}`,
    ];
  },

  async datapath(f, _c, changed) {
    const d = derive(f);
    const dev = d.overlay!;
    const link = f.links.ok ? f.links.value.find((l) => l.name === dev) : undefined;
    if (!link) return [];
    if (!link.up) {
      await ip("link", "set", "dev", dev, "up");
      changed.push(`ip link set ${dev} up`);
    }
    if (d.own) {
      const want = vtepAddress(d.own.subnet);
      if (!link.addrs.includes(want)) {
        await ip("addr", "replace", want, "dev", dev);
        changed.push(`ip addr replace ${want} dev ${dev}`);
      }
    }
    return undefined;
  },

  async "remote-leases"(f) {
    const d = derive(f);
    const broken = d.peers.filter((l) => missingFor(f, d, l).length > 0);
    if (d.backend === "vxlan") {
      const lines = addLines(broken, vxlanPlanInput(f, d));
      await applyBatch("bridge", lines.bridge);
      await applyBatch("ip", lines.ip);
      return [...lines.bridge.map((l) => `bridge ${l}`), ...lines.ip.map((l) => `ip ${l}`)];
    }
    const ul = f.underlay.ok ? f.underlay.value.name : null;
    if (d.backend === "host-gw" && ul) {
      const direct = routeLookup(f.routes.ok ? f.routes.value : []);
      const lines = broken
        .filter((l) => direct.isDirect(l.attrs.publicIp))
        .map((l) => `route replace ${routeLine(hostGwRoute(l, ul))}`);
      await applyBatch("ip", lines);
      return lines.map((l) => `ip ${l}`);
    }
    return [];
  },

  async "stale-entries"(f) {
    // map entries are the agent's: a restart prunes them (see the check)
    const stale = staleEntries(f).filter((s) => s.kind !== "map");
    const ipLines = stale.filter((s) => s.kind !== "fdb").map((s) => `${s.kind} del ${s.spec}`);
    const brLines = stale.filter((s) => s.kind === "fdb").map((s) => `fdb del ${s.spec}`);
    await removeBatch("ip", ipLines);
    await removeBatch("bridge", brLines);
    return [...ipLines.map((l) => `ip ${l}`), ...brLines.map((l) => `bridge ${l}`)];
  },

  async mtu(f) {
    const d = derive(f);
    await ip("link", "set", "dev", d.overlay!, "mtu", String(d.podMtu));
    return [`ip link set ${d.overlay} mtu ${d.podMtu}`];
  },

  async "ip-forward"() {
    writeSysctl("net.ipv4.ip_forward", 1);
    return ["sysctl net.ipv4.ip_forward=1"];
  },

  async "rp-filter"(f) {
    if (!f.underlay.ok) return [];
    const name = f.underlay.value.name;
    writeSysctl(confKey(name, "rp_filter"), 2);
    const changed = [`sysctl net.ipv4.conf.${name}.rp_filter=2`];
    if (f.sysctls["net.ipv4.conf.all.rp_filter"] === "1") {
      // effective = max(all, iface): 2 already wins, but say what stays strict elsewhere
      changed.push("net.ipv4.conf.all.rp_filter stays 1 (other interfaces keep strict filtering)");
    }
    return changed;
  },

  async "br-netfilter"(f, _c, changed) {
    if (f.sysctls["net.bridge.bridge-nf-call-iptables"] === null) {
      await run(["modprobe", "br_netfilter"]);
      changed.push("modprobe br_netfilter");
    }
    writeSysctl("net.bridge.bridge-nf-call-iptables", 1);
    changed.push("sysctl net.bridge.bridge-nf-call-iptables=1");
    return undefined;
  },

  async "forward-policy"(f, _c, changed) {
    const d = derive(f);
    if (!f.nft.ok || !d.network) return [];
    const net = formatCidr(d.network);
    for (const c of droppingForwardChains(f.nft.value)) {
      if (c.family !== "ip" && c.family !== "inet") continue;
      for (const field of ["daddr", "saddr"] as const) {
        if (acceptsNetwork(f.nft.value, c, field, d.network)) continue;
        if (c.table === LEGACY_FILTER) {
          const flag = field === "saddr" ? "-s" : "-d";
          await run(["iptables-legacy", "-I", "FORWARD", "1", flag, net, "-j", "ACCEPT"]);
          changed.push(`iptables-legacy -I FORWARD 1 ${flag} ${net} -j ACCEPT`);
          continue;
        }
        await run([
          "nft",
          "insert",
          "rule",
          c.family,
          c.table,
          c.name,
          "ip",
          field,
          net,
          "accept",
          "comment",
          '"tartan doctor: cluster network"',
        ]);
        changed.push(`nft insert rule ${chainName(c)} ip ${field} ${net} accept`);
      }
    }
    return undefined;
  },

  async masquerade(f) {
    const d = derive(f);
    if (!f.settings.ipMasq) return (await removeMasq()).map((t) => `nft delete table ${t}`);
    await applyMasq(d.network!, d.own!.subnet);
    return [`nft: table ip ${NFT_TABLE} applied (masquerade ${formatCidr(d.network!)} leaving the cluster)`];
  },

  async "ipv6-forward"(f, _c, changed) {
    const ul = f.underlay.ok ? f.underlay.value.name : null;
    // a forwarding host ignores router advertisements at accept_ra=1: keep an SLAAC underlay configured
    if (ul && readSysctl(confKey(ul, "accept_ra", "ipv6")) === "1") {
      writeSysctl(confKey(ul, "accept_ra", "ipv6"), 2);
      changed.push(`sysctl net.ipv6.conf.${ul}.accept_ra=2`);
    }
    writeSysctl("net.ipv6.conf.all.forwarding", 1);
    changed.push("sysctl net.ipv6.conf.all.forwarding=1");
    return undefined;
  },

  async "ipv6-datapath"(f, _c, changed) {
    const dev = f.ipv6?.device.ok ? f.ipv6.device.value : null;
    if (!dev) return [];
    const want = f.underlay.ok
      ? dualStackMtu(f.config.ok ? f.config.value.backend.mtu : null, f.underlay.value.mtu).device6
      : null;
    if (want !== null && dev.mtu !== want) {
      await ip("link", "set", "dev", dev.name, "mtu", String(want));
      changed.push(`ip link set ${dev.name} mtu ${want}`);
    }
    if (!dev.up) {
      await ip("link", "set", "dev", dev.name, "up");
      changed.push(`ip link set ${dev.name} up`);
    }
    const sn6 = f.ownLease?.subnet6 ?? null;
    if (sn6 && !dev.addrs.includes(vtepAddress6(sn6))) {
      await ip("addr", "replace", vtepAddress6(sn6), "dev", dev.name, "nodad");
      changed.push(`ip addr replace ${vtepAddress6(sn6)} dev ${dev.name} nodad`);
    }
    return undefined;
  },

  async "ipv6-routes"(f) {
    const d = derive(f);
    const broken = ipv6Peers(f).filter((l) => missing6For(f, l).length > 0);
    if (d.backend === "vxlan") {
      // only the IPv6 entries: the IPv4 ones are remote-leases' to repair
      const lines = addLines(
        broken,
        vxlanPlanInput6(f, d),
        entriesOf(
          () => false,
          (l) => isVxlan6Peer(l, d.vni),
        ),
      );
      await applyBatch("bridge", lines.bridge);
      await applyBatch("ip", lines.ip);
      return [...lines.bridge.map((l) => `bridge ${l}`), ...lines.ip.map((l) => `ip ${l}`)];
    }
    const ul = f.underlay.ok ? f.underlay.value.name : null;
    if (d.backend !== "host-gw" || !ul) return [];
    const lines = broken.flatMap((l) => {
      const r = hostGwRoute6(l, ul);
      return r ? [`route replace ${routeLine(r)}`] : [];
    });
    await applyBatch("ip", lines);
    return lines.map((l) => `ip ${l}`);
  },

  async "ipv6-masquerade"(f) {
    const d = derive(f);
    const c6 = f.config.ok ? (f.config.value.ipv6 ?? null) : null;
    if (!f.settings.ipMasq) {
      await run(["nft", "delete", "table", "ip6", NFT_TABLE]);
      return [`nft delete table ip6 ${NFT_TABLE}`];
    }
    const sn6 = d.own?.subnet6 ?? null;
    if (!c6 || !sn6 || !d.network || !d.own) return [];
    await applyMasq(d.network, d.own.subnet, { network6: c6.network, subnet6: sn6 });
    return [`nft: tables ip ${NFT_TABLE} and ip6 ${NFT_TABLE} applied`];
  },

  async "checksum-offload"(f) {
    const dev = derive(f).overlay!;
    await run(["ethtool", "-K", dev, "tx-checksum-ip-generic", "off"]);
    return [`ethtool -K ${dev} tx-checksum-ip-generic off`];
  },
};

/** Ids --fix can repair (the rest are advice only). */
export const REPAIRABLE = Object.keys(REPAIRS);

/** Runs the repair of every fixable check that is not ok; never throws. */
export async function applyFixes(f: Facts, checks: readonly Check[]): Promise<FixResult[]> {
  const out: FixResult[] = [];
  for (const c of checks) {
    if (c.status === "ok" || !c.fixable) continue;
    const repair = REPAIRS[c.id];
    if (!repair) continue;
    const changed: string[] = [];
    try {
      changed.push(...((await repair(f, c, changed)) ?? []));
      out.push({ id: c.id, changed, error: null });
    } catch (e) {
      out.push({ id: c.id, changed, error: errorText(e) });
    }
  }
  return out;
}
