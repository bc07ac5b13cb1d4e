/**
 * Dual stack on ebpf-vxlan, end to end: two ebpf-vxlan nodes and one kernel-vxlan node
 * (flannel.1 + flannel-v6.1, as flanneld programs them), all dual stack on an IPv6 ULA
 * underlay, CNI pods with both families. Pods reach each other over IPv4 and IPv6 in
 * every pair and both directions (so VXLAN over IPv6 from the eBPF programs is what the
 * kernel's flannel-v6 device accepts, and the other way round), TCP crosses over IPv6
 * (GSO packets take the overlay device's segmentation), IPv6 with extension headers and
 * IPv6 fragments cross as flannel-v6 carries them, CNI ADD registers a pod's IPv6 address
 * in tartan_endpoints6 at once, the node reaches remote pods and gets ICMPv6
 * packet-too-big above the MTU, the IPv6 counters move, doctor names missing and stale
 * IPv6 map entries, and agents SIGKILLed and restarted under a continuous IPv6 ping lose
 * nothing.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { withPinnedMap } from "../../src/backend/ebpf-vxlan/pins.ts";
import { parseIp4 } from "../../src/config/cidr.ts";
import { formatCidr6, formatIp6, parseIp6 } from "../../src/config/cidr6.ts";
import { parseSubnetEnv } from "../../src/config/subnet-env.ts";
import type { DoctorReport } from "../../src/doctor/report.ts";
import { Cluster, type ClusterNode, EXTERNAL_IP6 } from "../helpers/cluster.ts";
import { tcpSend6, udpEcho6 } from "../helpers/ext-headers.ts";
import { until } from "../helpers/netns.ts";
import { addPodViaCni, ping, removePodViaCni } from "../helpers/pods.ts";
import { isRoot, ROOT, requireBinary, status, waitReady } from "../helpers/tartan.ts";
import { tcpBulk } from "../helpers/traffic.ts";

const MTU = 1430; // dual stack: underlay 1500 − 70 (IPv6 VXLAN), both backends

async function macOf(cl: Cluster, ns: string, dev: string): Promise<string> {
  const j = JSON.parse(await cl.lab.must(ns, ["ip", "-json", "link", "show", "dev", dev])) as {
    address: string;
  }[];
  return j[0]!.address;
}

/** The node-side end of a pod's eth0 (its veth peer). */
async function hostSideVeth(cl: Cluster, nodeNs: string, podNs: string): Promise<string> {
  const eth0 = JSON.parse(await cl.lab.must(podNs, ["ip", "-json", "link", "show", "dev", "eth0"])) as {
    link_index: number;
  }[];
  const links = JSON.parse(await cl.lab.must(nodeNs, ["ip", "-json", "link", "show"])) as {
    ifindex: number;
    ifname: string;
  }[];
  return links.find((l) => l.ifindex === eth0[0]!.link_index)!.ifname;
}

for (const registry of ["sqlite", "etcd"] as const)
  describe.skipIf(!isRoot())(
    `dual stack on ebpf-vxlan: 2 ebpf-vxlan nodes + 1 vxlan node, ${registry}`,
    () => {
      let cl: Cluster;
      beforeAll(async () => {
        cl = await Cluster.create({
          backends: ["ebpf-vxlan", "ebpf-vxlan", "vxlan"],
          registry,
          ipv6: true,
          pods: "cni",
          tag: "d6",
        });
      }, 120_000);
      afterAll(async () => {
        await cl?.close();
      });
      const n = (i: number) => cl.nodes[i]!;
      const pod = (i: number) => n(i).pods[0]!;
      const counters = async (i: number) => (await status(cl.lab, n(i).ns)).counters;
      const reach = async (fromNs: string, to: string) => {
        await until(
          async () => (await ping(cl.lab, fromNs, to, { count: 1 })).received === 1,
          `${fromNs} → ${to}`,
          15_000,
        );
        return (await ping(cl.lab, fromNs, to)).received;
      };

      test("the lease announces BackendV6Data with the overlay device's MAC; subnet.env has one MTU for both families", async () => {
        for (const i of [0, 1]) {
          const s = await status(cl.lab, n(i).ns);
          const mac = await macOf(cl, n(i).ns, "tartan.1");
          expect(s.lease?.publicIpv6).toBe(n(i).ip6!);
          expect(s.lease?.subnet6).toMatch(/^fd00:19:0:[0-9a-f]{1,2}::\/64$/);
          const env = parseSubnetEnv(readFileSync(n(i).subnetFile, "utf8"));
          expect(env.mtu).toBe(MTU);
          expect(formatCidr6(env.subnet6!)).toBe(s.lease!.subnet6!);
          // the kernel vxlan node programmed this node's IPv6 side from the lease, as flanneld does
          const neigh = await cl.lab.must(n(2).ns, ["ip", "-6", "neigh", "show", "dev", "flannel-v6.1"]);
          expect(neigh).toContain(`lladdr ${mac} PERMANENT`);
          expect(await cl.lab.must(n(2).ns, ["bridge", "fdb", "show", "dev", "flannel-v6.1"])).toContain(
            `${mac} dst ${n(i).ip6} self permanent`,
          );
        }
      });

      test("pods reach each other over IPv4 and IPv6 in every pair, both ways (eBPF ↔ eBPF, eBPF ↔ kernel vxlan)", async () => {
        for (const [a, b] of [
          [0, 1],
          [1, 0],
          [0, 2],
          [2, 0],
          [1, 2],
          [2, 1],
        ] as const) {
          expect(await reach(pod(a).ns, pod(b).ip)).toBe(3);
          expect(await reach(pod(a).ns, pod(b).ip6!)).toBe(3);
        }
        // the IPv6 packets took the eBPF programs: encapsulated in BPF (at the pod's veth, or on
        // the bridge while the agent has not yet seen the pod), decapsulated in BPF
        for (const i of [0, 1]) {
          const c = await counters(i);
          expect(
            c.pod6_encap_ok! + c.pod6_encap_ok_neigh! + c.encap6_ok! + c.encap6_ok_neigh!,
          ).toBeGreaterThan(0);
          expect(c.decap6_stack! + c.decap6_redirect_peer!).toBeGreaterThan(0);
          expect(c.decap6_drop_non_member).toBe(0);
          expect(c.subnets6).toBe(2);
          expect(c.members6).toBe(2);
        }
      }, 90_000);

      test("TCP across nodes over IPv6 (GSO segmented by the overlay device) and over IPv4", async () => {
        const bytes = 20_000_000;
        const before = (await counters(0)).host6_encap_ok!;
        for (const [a, b] of [
          [0, 1],
          [1, 0],
          [0, 2],
          [2, 0],
        ] as const)
          expect(await tcpBulk(cl.lab, pod(a).ns, pod(b).ns, pod(b).ip6!, bytes)).toBe(bytes);
        expect(await tcpBulk(cl.lab, pod(0).ns, pod(2).ns, pod(2).ip, bytes)).toBe(bytes);
        // bulk IPv6 TCP arrives as GSO packets: their segments are encapsulated at the overlay device's peer
        expect((await counters(0)).host6_encap_ok! - before).toBeGreaterThan(1000);
      }, 120_000);

      test("IPv6 takes the pod fast path once the agent has the pods in tartan_endpoints6: sent from the veth, delivered into it", async () => {
        const before0 = await counters(0);
        const before1 = await counters(1);
        await until(
          async () => {
            await ping(cl.lab, pod(0).ns, pod(1).ip6!, { count: 1 });
            const [c0, c1] = [await counters(0), await counters(1)];
            return (
              c0.pod6_encap_ok! + c0.pod6_encap_ok_neigh! >
                before0.pod6_encap_ok! + before0.pod6_encap_ok_neigh! &&
              c1.decap6_redirect_peer! > before1.decap6_redirect_peer!
            );
          },
          "IPv6 through the pod program and into the pod by bpf_redirect_peer",
          30_000,
        );
        // and bulk TCP both ways still arrives whole (GSO from the pod's veth to the overlay device)
        const bytes = 20_000_000;
        expect(await tcpBulk(cl.lab, pod(0).ns, pod(1).ns, pod(1).ip6!, bytes)).toBe(bytes);
        expect(await tcpBulk(cl.lab, pod(1).ns, pod(0).ns, pod(0).ip6!, bytes)).toBe(bytes);
        expect((await counters(0)).pod6_gso).toBeGreaterThan(before0.pod6_gso!);
      }, 90_000);

      test("IPv6 with extension headers and IPv6 fragments cross as flannel-v6 carries them; IPv4 fragments and options too", async () => {
        const before = await counters(0);
        const lossless = async (ns: string, args: string[], dst: string) =>
          (
            await cl.lab.exec(ns, ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", ...args, dst])
          ).stdout.includes(" 0% packet loss");
        // every case in every pair, then one comparison: a failure shows the whole table
        const got: Record<string, boolean> = {};
        for (const [a, b] of [
          [0, 1],
          [1, 0],
          [0, 2],
          [2, 0],
        ] as const) {
          const [from, to] = [pod(a), pod(b)];
          // ping beyond the MTU: the pod's kernel fragments the echo request, the other pod the reply
          got[`${a}→${b} ping6 -s 3000`] = await lossless(from.ns, ["-s", "3000"], to.ip6!);
          // UDP beyond the MTU (fragments), with a destination-options or a hop-by-hop header, and both
          for (const [ext, size] of [
            ["none", 4000],
            ["dst", 100],
            ["hop", 100],
            ["dst", 3000],
          ] as const)
            got[`${a}→${b} udp6 ${ext} ${size}`] =
              (await udpEcho6(cl.lab, from.ns, to.ns, to.ip6!, { ext, size, count: 3 })) === 3;
          // TCP with a destination-options header on every segment: GSO, checksums left to the
          // offload. Between the eBPF nodes only: the kernel itself does not forward such GSO
          // packets reliably — on a vxlan-only cluster, and on a plain bridge + router without
          // VXLAN, some transfers stalled, the forwarding node counting Ip6FragFails and sending
          // packet-too-big for segments that fit
          if (a !== 2 && b !== 2)
            got[`${a}→${b} tcp6 dst`] =
              (await tcpSend6(cl.lab, from.ns, to.ns, to.ip6!, "dst", 5_000_000)) === 5_000_000;
          // IPv4: fragments from the pod, and IP options (record route)
          got[`${a}→${b} ping -s 3000`] = await lossless(from.ns, ["-s", "3000"], to.ip);
          got[`${a}→${b} ping -R`] = await lossless(from.ns, ["-R"], to.ip);
        }
        expect(got).toEqual(Object.fromEntries(Object.keys(got).map((k) => [k, true])));
        // they took the eBPF programs, none passed for want of an L4 header
        const c = await counters(0);
        expect(c.pod6_pass_l4! + c.encap6_pass_l4! + c.host6_pass_l4!).toBe(
          before.pod6_pass_l4! + before.encap6_pass_l4! + before.host6_pass_l4!,
        );
        expect(c.pod6_encap_ok! + c.encap6_ok! + c.host6_encap_ok!).toBeGreaterThan(
          before.pod6_encap_ok! + before.encap6_ok! + before.host6_encap_ok!,
        );
      }, 300_000);

      test("CNI ADD puts a pod's IPv6 address into tartan_endpoints6 before the pod sends a packet (as its IPv4 one); DEL takes both out", async () => {
        const node = n(0);
        const p = await addPodViaCni(cl.lab, node, node.subnetFile, {
          binary: requireBinary(),
          name: `c6x${registry}`,
        });
        const inMaps = () => ({
          v4: withPinnedMap(node.bpffs, "endpoints", (m) => m.lookup(parseIp4(p.ip)!)) !== null,
          v6: withPinnedMap(node.bpffs, "endpoints6", (m) => m.lookup(parseIp6(p.ip6!)!)) !== null,
        });
        // read at once: the agent learns a pod from the bridge's neighbours only after it talked
        expect(inMaps()).toEqual({ v4: true, v6: true });
        const entry = withPinnedMap(node.bpffs, "endpoints6", (m) => m.lookup(parseIp6(p.ip6!)!))!;
        expect(entry.podMac).toBe(await macOf(cl, p.ns, "eth0"));
        expect(entry.ifindex).toBe(
          (
            JSON.parse(await cl.lab.must(node.ns, ["ip", "-json", "link", "show", "dev", p.hostVeth])) as {
              ifindex: number;
            }[]
          )[0]!.ifindex,
        );
        // delivered into it by bpf_redirect_peer from its first IPv6 packet on
        const before = (await counters(0)).decap6_redirect_peer!;
        expect((await ping(cl.lab, pod(1).ns, p.ip6!, { count: 1 })).received).toBe(1);
        expect((await counters(0)).decap6_redirect_peer!).toBeGreaterThan(before);
        await removePodViaCni(cl.lab, node, node.subnetFile, p, { binary: requireBinary() });
        expect(inMaps()).toEqual({ v4: false, v6: false });
      }, 60_000);

      test("node → remote pod over IPv6; MTU-sized IPv6 packets cross, bigger ones get ICMPv6 packet-too-big", async () => {
        for (const b of [1, 2]) expect(await reach(n(0).ns, pod(b).ip6!)).toBe(3);
        // ICMPv6 echo: 40 bytes of IPv6 header and 8 of ICMPv6 header
        for (const b of [1, 2])
          expect((await ping(cl.lab, pod(0).ns, pod(b).ip6!, { size: MTU - 48 })).received).toBe(3);
        // a pod with a larger MTU than the overlay's: the program leaves the packet to the
        // stack, whose route via the overlay device answers packet-too-big with its MTU
        const before = (await counters(0)).encap6_pass_too_big!;
        // the pod's veth pair both ways (the host side drops frames above its MTU before any program)
        const hostVeth = await hostSideVeth(cl, n(0).ns, pod(0).ns);
        const setMtu = async (mtu: number) => {
          await cl.lab.must(n(0).ns, ["ip", "link", "set", "dev", hostVeth, "mtu", String(mtu)]);
          await cl.lab.must(pod(0).ns, ["ip", "link", "set", "dev", "eth0", "mtu", String(mtu)]);
        };
        await setMtu(1500);
        try {
          const over = await ping(cl.lab, pod(0).ns, pod(1).ip6!, { size: 1500 - 48, count: 2 });
          expect(over.received).toBe(0);
          expect(over.out).toMatch(new RegExp(`mtu ?= ?${MTU}|[Pp]acket too big`));
          expect((await counters(0)).encap6_pass_too_big! - before).toBeGreaterThan(0);
          const route = await cl.lab.must(pod(0).ns, ["ip", "-6", "route", "get", pod(1).ip6!]);
          expect(route).toContain(`mtu ${MTU}`);
        } finally {
          await setMtu(MTU);
        }
      }, 60_000);

      test("VXLAN over IPv6 with our VNI from a host that is not a member never reaches the pod (decap6_drop_non_member)", async () => {
        const ext = cl.externalNs;
        const target = n(1);
        const sn6 = parseSubnetEnv(readFileSync(target.subnetFile, "utf8")).subnet6!;
        const vtep6 = formatIp6(sn6.ip);
        const mac = await macOf(cl, target.ns, "tartan.1");
        const inner = "fd00:19:0:fe::1";
        // the outsider builds VXLAN over IPv6 exactly as a flannel-v6 member would
        for (const cmd of [
          ["ip", "link", "add", "inj6", "type", "vxlan", "id", "1", "dstport", "8472", "local", EXTERNAL_IP6],
          ["ip", "link", "set", "inj6", "address", "0e:00:00:00:fe:06", "up"],
          ["ip", "addr", "add", `${inner}/128`, "dev", "inj6", "nodad"],
          ["ip", "-6", "neigh", "replace", vtep6, "lladdr", mac, "dev", "inj6", "nud", "permanent"],
          ["bridge", "fdb", "append", mac, "dev", "inj6", "dst", target.ip6!, "self", "permanent"],
          ["ip", "-6", "route", "replace", formatCidr6(sn6), "via", vtep6, "dev", "inj6", "onlink"],
        ])
          await cl.lab.must(ext, cmd);
        const pod1 = pod(1);
        await cl.lab.must(pod1.ns, ["nft", "add", "table", "ip6", "injcount"]);
        await cl.lab.must(pod1.ns, [
          "nft",
          "add chain ip6 injcount input { type filter hook input priority 0 ; policy accept ; }",
        ]);
        await cl.lab.must(pod1.ns, ["nft", `add rule ip6 injcount input ip6 saddr ${inner} counter`]);
        const before = (await counters(1)).decap6_drop_non_member!;
        const sent = 50;
        await cl.lab.exec(ext, [
          "ping",
          "-n",
          "-q",
          "-c",
          String(sent),
          "-i",
          "0.01",
          "-W",
          "1",
          "-I",
          inner,
          pod1.ip6!,
        ]);
        const out = await cl.lab.must(pod1.ns, ["nft", "list", "table", "ip6", "injcount"]);
        await cl.lab.must(pod1.ns, ["nft", "delete", "table", "ip6", "injcount"]);
        await cl.lab.must(ext, ["ip", "link", "del", "inj6"]);
        expect(Number(/packets (\d+)/.exec(out)?.[1])).toBe(0);
        expect((await counters(1)).decap6_drop_non_member! - before).toBeGreaterThanOrEqual(sent);
        // members still get through
        expect(await reach(pod(0).ns, pod1.ip6!)).toBe(3);
      }, 60_000);

      test("tartan doctor: every check ok, the IPv6 ones too; an IPv6 map entry removed by hand is named, one added by hand is stale", async () => {
        const cniDir = join(cl.lab.dir, "cni-net.d");
        if (!existsSync(cniDir)) mkdirSync(cniDir);
        copyFileSync(join(ROOT, "deploy/cni/10-tartan.conflist"), join(cniDir, "10-tartan.conflist"));
        const doctor = async () => {
          const r = await cl.lab.exec(n(0).ns, [
            requireBinary(),
            "doctor",
            "--json",
            `--cni-conf-dir=${cniDir}`,
            "--no-probe",
          ]);
          return { code: r.code, report: JSON.parse(r.stdout) as DoctorReport };
        };
        const notOk = (r: { report: DoctorReport }) =>
          r.report.checks.filter((x) => x.status !== "ok").map((x) => `${x.id}: ${x.finding}`);
        const healthy = await doctor();
        expect(notOk(healthy)).toEqual([]);
        const byId = (r: { report: DoctorReport }, id: string) => r.report.checks.find((x) => x.id === id)!;
        expect(byId(healthy, "ipv6-datapath").finding).toContain("tartan.1 carries IPv6");
        expect(byId(healthy, "ipv6-routes").finding).toContain("2 dual-stack peer(s)");
        // node 2's IPv6 subnet taken out of node 0's map by hand
        const peer6 = parseSubnetEnv(readFileSync(n(2).subnetFile, "utf8")).subnet6!;
        const key = { prefixLen: peer6.len, addr: peer6.ip };
        const value = withPinnedMap(n(0).bpffs, "subnets6", (m) => m.lookup(key))!;
        expect(value).not.toBeNull();
        withPinnedMap(n(0).bpffs, "subnets6", (m) => m.delete(key));
        try {
          const broken = await doctor();
          const routes = byId(broken, "ipv6-routes");
          expect([routes.status, broken.code]).toEqual(["problem", 1]);
          expect(routes.finding).toContain(`${formatCidr6(peer6)}: map tartan_subnets6 entry (${n(2).ip6}`);
        } finally {
          withPinnedMap(n(0).bpffs, "subnets6", (m) => m.update(key, value!));
        }
        expect(notOk(await doctor())).toEqual([]);
        // a stranger's IPv6 subnet and node put in by hand: stale, named in stale-entries
        const strangerKey = { prefixLen: 64, addr: parseIp6("fd00:19:0:fa::")! };
        const strangerNode = parseIp6("fd00:18::fa")!;
        withPinnedMap(n(0).bpffs, "subnets6", (m) =>
          m.update(strangerKey, { nodeIp6: strangerNode, vtepMac: "02:00:00:00:00:fa", flags: 0 }),
        );
        withPinnedMap(n(0).bpffs, "members6", (m) => m.update(strangerNode, 1));
        try {
          const stale = byId(await doctor(), "stale-entries");
          expect([stale.status, stale.details]).toEqual([
            "problem",
            ["map tartan_subnets6 fd00:19:0:fa::/64 (node fd00:18::fa)", "map tartan_members6 fd00:18::fa"],
          ]);
        } finally {
          withPinnedMap(n(0).bpffs, "subnets6", (m) => m.delete(strangerKey));
          withPinnedMap(n(0).bpffs, "members6", (m) => m.delete(strangerNode));
        }
        expect(notOk(await doctor())).toEqual([]);
      }, 60_000);

      test("ebpf-vxlan agents SIGKILLed and restarted under a continuous IPv6 ping lose nothing", async () => {
        const count = 1000; // 10 s: both restarts fall inside it
        const pingers = [1, 2].map((b) =>
          cl.lab.spawn(pod(0).ns, `ping6-${b}`, [
            "ping",
            "-n",
            "-c",
            String(count),
            "-i",
            "0.01",
            "-W",
            "1",
            pod(b).ip6!,
          ]),
        );
        for (const p of pingers)
          await until(
            async () => (await cl.lab.log(p)).includes("icmp_seq=20 ") || undefined,
            "ping running",
          );
        for (const i of [0, 1]) {
          const node: ClusterNode = n(i);
          await cl.lab.stop(node.agent!, "SIGKILL");
          // the same node name: the VTEP MAC derives from it, and peers hold the old one
          node.agent = cl.startAgent(node);
          await waitReady(cl.lab, node.ns, node.agent, 8471, 30_000);
        }
        for (const p of pingers) {
          await p.proc.exited;
          const out = await cl.lab.log(p);
          const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
          expect(m).not.toBeNull();
          const seen = new Set([...out.matchAll(/icmp_seq=(\d+) /g)].map((x) => Number(x[1])));
          const lost = Array.from({ length: count }, (_, k) => k + 1).filter((k) => !seen.has(k));
          expect({ to: p.name, sent: Number(m![1]), received: Number(m![2]), lost }).toEqual({
            to: p.name,
            sent: count,
            received: count,
            lost: [],
          });
        }
        for (const i of [0, 1])
          expect(await cl.lab.log(n(i).agent!)).toContain("adopted the pinned datapath");
      }, 90_000);
    },
  );
