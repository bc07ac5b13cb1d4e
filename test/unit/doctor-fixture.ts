/**
 * Facts of a healthy two-node vxlan cluster as seen from node 1 (198.18.0.1, lease
 * 198.19.1.0/24; peer 198.18.0.2 with 198.19.2.0/24), for the doctor's unit tests:
 * each test breaks one fact and checks the verdict.
 */

import { cidrToKey, parseCidr, parseIp4 } from "../../src/config/cidr.ts";
import { parseNetworkConfig } from "../../src/config/network.ts";
import { type Facts, fact, type LinkFacts } from "../../src/doctor/facts.ts";
import { parseNftJson } from "../../src/doctor/nft-rules.ts";
import type { Lease } from "../../src/lease/lease.ts";
import { type AgentStatus, newMetrics } from "../../src/status/status.ts";

export const NOW = Date.parse("2026-01-01T00:00:00Z");
export const MAC1 = "0e:7a:01:12:00:01";
export const MAC2 = "0e:7a:01:12:00:02";

export function lease(
  subnet: string,
  publicIp: string,
  mac: string | null,
  backendType = "vxlan",
  vni = 1,
): Lease {
  const sn = parseCidr(subnet)!;
  return {
    subnet: sn,
    key: cidrToKey(sn),
    attrs: {
      publicIp: parseIp4(publicIp)!,
      backendType,
      vxlan: mac ? { VNI: vni, VtepMAC: mac } : null,
    },
    expiresAt: NOW + 24 * 3600_000,
    revision: 1,
  };
}

export const OWN = lease("198.19.1.0/24", "198.18.0.1", MAC1);
export const PEER = lease("198.19.2.0/24", "198.18.0.2", MAC2);

export function link(name: string, o: Partial<LinkFacts> = {}): LinkFacts {
  return {
    name,
    ifindex: 1,
    kind: null,
    mtu: 1500,
    mac: "02:00:00:00:00:01",
    up: true,
    master: null,
    vxlan: null,
    addrs: [],
    ...o,
  };
}

export const MASQ_NFT = JSON.stringify({
  nftables: [
    { table: { family: "ip", name: "tartan" } },
    {
      chain: {
        family: "ip",
        table: "tartan",
        name: "postrouting",
        type: "nat",
        hook: "postrouting",
        prio: 99,
        policy: "accept",
      },
    },
    {
      rule: {
        family: "ip",
        table: "tartan",
        chain: "postrouting",
        expr: [
          {
            match: {
              op: "==",
              left: { payload: { protocol: "ip", field: "saddr" } },
              right: { prefix: { addr: "198.19.0.0", len: 16 } },
            },
          },
          {
            match: {
              op: "!=",
              left: { payload: { protocol: "ip", field: "daddr" } },
              right: { prefix: { addr: "224.0.0.0", len: 4 } },
            },
          },
          { masquerade: { flags: "fully-random" } },
        ],
      },
    },
  ],
});

function agentStatus(): AgentStatus {
  return {
    node: "node1",
    version: "0.1.0 (test)",
    backend: "vxlan",
    startedAt: new Date(NOW - 60_000).toISOString(),
    network: "198.19.0.0/16",
    registry: { description: "sqlite:/reg.db", state: "ok", lastError: null, revision: 3 },
    lease: {
      subnet: "198.19.1.0/24",
      publicIp: "198.18.0.1",
      expiresAt: new Date(OWN.expiresAt!).toISOString(),
      renewAt: null,
    },
    subnetFile: { path: "/run/flannel/subnet.env", written: true },
    leases: [],
    counts: { leases: 0, programmed: 0 },
    health: { ok: true, reasons: [] },
    ready: { ok: true, reasons: [] },
    counters: {},
    metrics: newMetrics(),
  };
}

export function healthy(): Facts {
  const cfg = parseNetworkConfig('{"Network":"198.19.0.0/16","Backend":{"Type":"vxlan"}}');
  return {
    now: NOW,
    kernel: "6.18.44-test",
    settings: {
      nodeName: "node1",
      backend: "vxlan",
      subnetFile: "/run/flannel/subnet.env",
      ipMasq: true,
      bpffs: "/sys/fs/bpf/tartan/node1",
      bridge: "cni0",
      cniConfDir: "/etc/cni/net.d",
      http: "127.0.0.1:8471",
      sources: {},
    },
    agent: fact({ status: agentStatus(), options: {}, network: null }),
    config: fact(cfg),
    registry: fact({ description: "sqlite:/reg.db", leases: [OWN, PEER], invalid: [] }),
    kube: null,
    underlay: fact({
      name: "eth0",
      mtu: 1500,
      ifaceIp: parseIp4("198.18.0.1")!,
      publicIp: parseIp4("198.18.0.1")!,
    }),
    ownLease: OWN,
    subnetEnv: {
      kind: "ok",
      env: { network: cfg.network, subnet: OWN.subnet, mtu: 1450, ipMasq: true },
    },
    links: fact([
      link("lo", { mtu: 65536 }),
      link("eth0", { ifindex: 2, kind: "veth", addrs: ["198.18.0.1/16"] }),
      link("flannel.1", {
        ifindex: 3,
        kind: "vxlan",
        mtu: 1450,
        mac: MAC1,
        vxlan: { id: 1, local: "198.18.0.1", port: 8472, learning: false, link: "eth0" },
        addrs: ["198.19.1.0/32"],
      }),
      link("cni0", { ifindex: 4, kind: "bridge", mtu: 1450, addrs: ["198.19.1.1/24"] }),
      link("veth1x2", { ifindex: 5, kind: "veth", mtu: 1450, master: "cni0" }),
    ]),
    routes: fact([
      { dst: "198.18.0.0/16", dev: "eth0", protocol: "kernel", scope: "link", prefsrc: "198.18.0.1" },
      { dst: "198.19.1.0/24", dev: "cni0", protocol: "kernel", scope: "link", prefsrc: "198.19.1.1" },
      { dst: "198.19.2.0/24", gateway: "198.19.2.0", dev: "flannel.1", flags: ["onlink"] },
    ]),
    neighbours: fact([{ dst: "198.19.2.0", lladdr: MAC2, state: ["PERMANENT"] }]),
    fdb: fact([{ mac: MAC2, dst: "198.18.0.2", flags: ["self"], state: "permanent" } as never]),
    sysctls: {
      "net.ipv4.ip_forward": "1",
      "net.ipv4.conf.all.rp_filter": "0",
      "net.ipv4.conf.eth0.rp_filter": "0",
      "net.bridge.bridge-nf-call-iptables": "1",
    },
    nft: fact(parseNftJson(MASQ_NFT)),
    cni: {
      dir: "/etc/cni/net.d",
      exists: true,
      files: [{ name: "10-tartan.conflist", types: ["tartan", "portmap"], invalid: null }],
    },
    offload: fact({ "tx-checksum-ip-generic": "on" }),
    bpf: { ok: false, error: "not an ebpf-vxlan node" },
    probes: [
      {
        lease: "198.19.2.0/24",
        publicIp: "198.18.0.2",
        target: "198.19.2.0",
        ok: true,
        rttMs: 0.12,
        error: null,
      },
    ],
  };
}

/** Replaces one link (by name) in the facts. */
export function withLink(f: Facts, name: string, o: Partial<LinkFacts> | null): Facts {
  const links = f.links.ok ? f.links.value : [];
  const next =
    o === null
      ? links.filter((l) => l.name !== name)
      : links.map((l) => (l.name === name ? { ...l, ...o } : l));
  return { ...f, links: fact(next) };
}
