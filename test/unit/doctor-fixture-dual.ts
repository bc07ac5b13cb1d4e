/**
 * The healthy two-node vxlan cluster of doctor-fixture.ts, dual stack (EnableIPv6,
 * IPv6Network fd00:19::/56): node 1 also holds fd00:19:0:1::/64 and its underlay has
 * fd00:18::1; the peer fd00:19:0:2::/64 behind fd00:18::2. Pods get 1430 (underlay − 70).
 */
import { parseCidr6, parseIp6 } from "../../src/config/cidr6.ts";
import { parseNetworkConfig } from "../../src/config/network.ts";
import { subnetKey } from "../../src/config/subnet-key.ts";
import { type Facts, fact } from "../../src/doctor/facts.ts";
import { parseNftJson } from "../../src/doctor/nft-rules.ts";
import type { Lease } from "../../src/lease/lease.ts";
import { healthy, link, MAC1, MAC2, MASQ_NFT, OWN, PEER } from "./doctor-fixture.ts";

export const MAC6_1 = "0e:76:01:00:00:01";
export const MAC6_2 = "0e:76:01:00:00:02";

function dualLease(l: Lease, subnet6: string, publicIpv6: string, mac6: string): Lease {
  const sn6 = parseCidr6(subnet6)!;
  return {
    ...l,
    key: subnetKey(l.subnet, sn6),
    subnet6: sn6,
    attrs: { ...l.attrs, publicIpv6: parseIp6(publicIpv6)!, vxlan6: { VNI: 1, VtepMAC: mac6 } },
  };
}

export const OWN6 = dualLease(OWN, "fd00:19:0:1::/64", "fd00:18::1", MAC6_1);
export const PEER6 = dualLease(PEER, "fd00:19:0:2::/64", "fd00:18::2", MAC6_2);

/** table ip6 tartan as the agent applies it (nft -j shape). */
export const MASQ6_NFT_ROWS = [
  {
    chain: {
      family: "ip6",
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
      family: "ip6",
      table: "tartan",
      chain: "postrouting",
      expr: [
        {
          match: {
            op: "==",
            left: { payload: { protocol: "ip6", field: "saddr" } },
            right: { prefix: { addr: "fd00:19::", len: 56 } },
          },
        },
        { masquerade: { flags: "fully-random" } },
      ],
    },
  },
];

export function healthyDual(): Facts {
  const f = healthy();
  const cfg = parseNetworkConfig(
    '{"Network":"198.19.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:19::/56","Backend":{"Type":"vxlan"}}',
  );
  const nft = JSON.parse(MASQ_NFT) as { nftables: unknown[] };
  return {
    ...f,
    config: fact(cfg),
    registry: fact({ description: "sqlite:/reg.db", leases: [OWN6, PEER6], invalid: [] }),
    ownLease: OWN6,
    subnetEnv: {
      kind: "ok",
      env: {
        network: cfg.network,
        subnet: OWN6.subnet,
        network6: cfg.ipv6!.network,
        subnet6: OWN6.subnet6!,
        mtu: 1430,
        ipMasq: true,
      },
    },
    links: fact([
      link("lo", { mtu: 65536 }),
      link("eth0", { ifindex: 2, kind: "veth", addrs: ["198.18.0.1/16"] }),
      link("flannel.1", {
        ifindex: 3,
        kind: "vxlan",
        mtu: 1430,
        mac: MAC1,
        vxlan: { id: 1, local: "198.18.0.1", port: 8472, learning: false, link: "eth0" },
        addrs: ["198.19.1.0/32"],
      }),
      link("flannel-v6.1", { ifindex: 6, kind: "vxlan", mtu: 1430, mac: MAC6_1 }),
      link("cni0", { ifindex: 4, kind: "bridge", mtu: 1430, addrs: ["198.19.1.1/24"] }),
      link("veth1x2", { ifindex: 5, kind: "veth", mtu: 1430, master: "cni0" }),
    ]),
    fdb: fact([{ mac: MAC2, dst: "198.18.0.2", flags: ["self"], state: "permanent" } as never]),
    nft: fact(parseNftJson(JSON.stringify({ nftables: [...nft.nftables, ...MASQ6_NFT_ROWS] }))),
    ipv6: {
      forwarding: "1",
      underlayIp: "fd00:18::1",
      routes: fact([
        { dst: "fd00:18::/64", dev: "eth0", protocol: "kernel" },
        { dst: "fd00:19:0:1::/64", dev: "cni0", protocol: "kernel" },
        { dst: "fd00:19:0:2::/64", gateway: "fd00:19:0:2::", dev: "flannel-v6.1", flags: ["onlink"] },
      ]),
      device: fact({
        name: "flannel-v6.1",
        kind: "vxlan",
        mtu: 1430,
        mac: MAC6_1,
        up: true,
        vxlan: { id: 1, local6: "fd00:18::1", port: 8472, learning: false },
        addrs: ["fd00:19:0:1::/128"],
      }),
      neighbours: fact([{ dst: "fd00:19:0:2::", lladdr: MAC6_2, state: ["PERMANENT"] }]),
      fdb: fact([{ mac: MAC6_2, dst: "fd00:18::2", flags: ["self"], state: "permanent" } as never]),
    },
  };
}
