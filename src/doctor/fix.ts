/**
 * `tartan doctor --fix`: the safe repairs, one per fixable check, each reporting
 * exactly what it changed. Safe means: it restores what the lease, the network config
 * and the flags already say (bridge address, subnet.env, missing or stale datapath
 * entries, overlay MTU, sysctls, our own nft table, accept rules for the cluster
 * network) and never deletes anything that is not ours or not stale. Anything else
 * (a misconfigured device, a detached eBPF program) is left to an agent restart.
 */
import { routeLine, vtepAddress } from "../backend/facts.ts";
import { hostGwRoute } from "../backend/host-gw/facts.ts";
import { addLines } from "../backend/vxlan/plan.ts";
import { firstHost, formatCidr, formatIp4 } from "../config/cidr.ts";
import { writeSubnetEnv } from "../config/subnet-env.ts";
import { errorText } from "../log.ts";
import { applyBatch, removeBatch } from "../net/batch.ts";
import { ip } from "../net/ip.ts";
import { applyMasq, NFT_TABLE, removeMasq } from "../net/masq.ts";
import { routeLookup } from "../net/routes.ts";
import { confKey, writeSysctl } from "../net/sysctl.ts";
import { type Check, derive, missingFor, staleEntries, vxlanPlanInput } from "./checks.ts";
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
    const env = { network: d.network!, subnet: d.own!.subnet, mtu: d.podMtu!, ipMasq: f.settings.ipMasq };
    writeSubnetEnv(f.settings.subnetFile, env);
    return [
      `wrote ${f.settings.subnetFile}: FLANNEL_NETWORK=${formatCidr(env.network)} FLANNEL_SUBNET=${formatIp4(firstHost(env.subnet))}/${env.subnet.len} FLANNEL_MTU=${env.mtu} FLANNEL_IPMASQ=${env.ipMasq}`,
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
    if (!f.settings.ipMasq) {
      await removeMasq();
      return [`nft delete table ip ${NFT_TABLE}`];
    }
    await applyMasq(d.network!, d.own!.subnet);
    return [`nft: table ip ${NFT_TABLE} applied (masquerade ${formatCidr(d.network!)} leaving the cluster)`];
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
