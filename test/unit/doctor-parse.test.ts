import { describe, expect, test } from "bun:test";
import { parseCidr } from "../../src/config/cidr.ts";
import {
  acceptsNetwork,
  hasKubeProxy,
  masqueradesNetwork,
  parseNftJson,
} from "../../src/doctor/nft-rules.ts";
import {
  cniCandidates,
  parseCniFile,
  parseEthtoolFeatures,
  parseIptablesForward,
  parseLinks,
  parsePing,
} from "../../src/doctor/parse.ts";
import { MASQ_NFT } from "./doctor-fixture.ts";

describe("doctor parsers", () => {
  test("ethtool -k: features with [fixed] markers", () => {
    const f = parseEthtoolFeatures(
      "Features for flannel.1:\nrx-checksumming: on\ntx-checksumming: on\n\ttx-checksum-ipv4: off [fixed]\n\ttx-checksum-ip-generic: on\n",
    );
    expect(f["tx-checksum-ip-generic"]).toBe("on");
    expect(f["tx-checksum-ipv4"]).toBe("off");
    expect(f["rx-checksumming"]).toBe("on");
  });

  test("ping summary: received and average round trip", () => {
    const ok = parsePing(
      "--- 198.19.2.0 ping statistics ---\n3 packets transmitted, 3 received, 0% packet loss, time 404ms\nrtt min/avg/max/mdev = 0.071/0.105/0.150/0.032 ms\n",
    );
    expect(ok).toEqual({ received: 3, avgMs: 0.105 });
    expect(parsePing("3 packets transmitted, 0 received, 100% packet loss")).toEqual({
      received: 0,
      avgMs: null,
    });
  });

  test("CNI files: plugin types of conflists and confs, invalid ones explained, lexical order", () => {
    expect(
      parseCniFile("10-tartan.conflist", '{"plugins":[{"type":"tartan"},{"type":"portmap"}]}').types,
    ).toEqual(["tartan", "portmap"]);
    expect(parseCniFile("00-b.conf", '{"type":"bridge"}').types).toEqual(["bridge"]);
    expect(parseCniFile("00-x.conf", "{oops").invalid).toContain("not JSON");
    expect(parseCniFile("00-y.conf", "{}").invalid).toBe('neither "type" nor "plugins"');
    expect(cniCandidates(["99-z.conf", "README", "10-a.conflist", "05-b.json", "x.conf.bak"])).toEqual([
      "05-b.json",
      "10-a.conflist",
      "99-z.conf",
    ]);
  });

  test("ip -json -details addr show: kind, vxlan attributes, IPv4 addresses", () => {
    const json = JSON.stringify([
      {
        ifindex: 4,
        ifname: "flannel.1",
        flags: ["BROADCAST", "UP"],
        mtu: 1450,
        address: "0e:7a:01:12:00:01",
        linkinfo: {
          info_kind: "vxlan",
          info_data: { id: 1, local: "198.18.0.1", port: 8472, learning: false },
        },
        addr_info: [
          { family: "inet", local: "198.19.1.0", prefixlen: 32 },
          { family: "inet6", local: "fe80::1", prefixlen: 64 },
        ],
      },
    ]);
    const [l] = parseLinks(json);
    expect(l).toMatchObject({ name: "flannel.1", kind: "vxlan", up: true, addrs: ["198.19.1.0/32"] });
    expect(l!.vxlan).toMatchObject({ id: 1, port: 8472, learning: false });
  });
});

describe("nft ruleset reading", () => {
  const net = parseCidr("198.19.0.0/16")!;
  test("the masquerade table is recognised for its network only", () => {
    const nft = parseNftJson(MASQ_NFT);
    expect(masqueradesNetwork(nft, "tartan", net)).toBe(true);
    expect(masqueradesNetwork(nft, "tartan", parseCidr("10.244.0.0/16")!)).toBe(false);
  });
  test("an accept rule covering the network counts; one for a smaller prefix does not", () => {
    const rule = (addr: string, len: number) => ({
      rule: {
        family: "inet",
        table: "filter",
        chain: "forward",
        expr: [
          {
            match: {
              op: "==",
              left: { payload: { protocol: "ip", field: "saddr" } },
              right: { prefix: { addr, len } },
            },
          },
          { accept: null },
        ],
      },
    });
    const chain = { family: "inet", table: "filter", name: "forward", hook: "forward", policy: "drop" };
    const wide = parseNftJson(JSON.stringify({ nftables: [{ chain }, rule("198.19.0.0", 16)] }));
    expect(acceptsNetwork(wide, wide.chains[0]!, "saddr", net)).toBe(true);
    expect(acceptsNetwork(wide, wide.chains[0]!, "daddr", net)).toBe(false);
    const narrow = parseNftJson(JSON.stringify({ nftables: [{ chain }, rule("198.19.1.0", 24)] }));
    expect(acceptsNetwork(narrow, narrow.chains[0]!, "saddr", net)).toBe(false);
  });
  test("kube-proxy is recognised by its chains or its nftables table", () => {
    expect(hasKubeProxy(parseNftJson(MASQ_NFT))).toBe(false);
    expect(
      hasKubeProxy(
        parseNftJson(
          JSON.stringify({ nftables: [{ chain: { family: "ip", table: "kube-proxy", name: "services" } }] }),
        ),
      ),
    ).toBe(true);
  });
});

describe("legacy iptables FORWARD", () => {
  const net = parseCidr("198.19.0.0/16")!;
  test("policy and plain -s/-d ACCEPT rules are read; other rules never count", () => {
    const f = parseIptablesForward(
      "-P FORWARD DROP\n-A FORWARD -j DOCKER-USER\n-A FORWARD -s 198.19.0.0/16 -j ACCEPT\n-A FORWARD -i eth9 -d 198.19.0.0/16 -j ACCEPT\n",
    );
    expect(f.chains[0]).toMatchObject({ hook: "forward", policy: "drop", name: "FORWARD" });
    expect(acceptsNetwork(f, f.chains[0]!, "saddr", net)).toBe(true);
    expect(acceptsNetwork(f, f.chains[0]!, "daddr", net)).toBe(false);
  });
});
