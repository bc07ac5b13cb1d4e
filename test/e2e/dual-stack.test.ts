/**
 * Dual stack (flannel's EnableIPv6) end to end, on an IPv6 ULA underlay (fd00:18::/64) and
 * IPv6 pods (fd00:19::/56) in namespaces: for vxlan and host-gw, on sqlite and etcd, pods
 * made by `tartan cni` with both families reach each other across nodes over IPv4 and
 * IPv6 (ICMP and TCP); subnet.env, the registry key and the lease JSON are byte for byte
 * flanneld's; flannel-v6.1 is the device flanneld makes; MTU-sized IPv6 packets cross;
 * IPv6 leaving the cluster is masqueraded. Then a mixed cluster — a Tartan node and a
 * flanneld-style dual-stack node made by hand — and the lease lifecycle: a restart and a
 * reboot keep both subnets, IPv6 turned on keeps the IPv4 subnet. ebpf-vxlan in dual
 * stack: dual-stack-ebpf.test.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { formatCidr } from "../../src/config/cidr.ts";
import { formatCidr6, formatIp6 } from "../../src/config/cidr6.ts";
import { parseSubnetEnv } from "../../src/config/subnet-env.ts";
import { parseSubnetKey } from "../../src/config/subnet-key.ts";
import type { DoctorReport } from "../../src/doctor/report.ts";
import { silentLogger } from "../../src/log.ts";
import { SqliteRegistry } from "../../src/registry/sqlite.ts";
import { Cluster, EXTERNAL_IP6, IPV6_NETWORK } from "../helpers/cluster.ts";
import { Lab, until } from "../helpers/netns.ts";
import { addPod, type Pod, ping } from "../helpers/pods.ts";
import { isRoot, ROOT, requireBinary, startAgent, status, tartan, waitReady } from "../helpers/tartan.ts";
import { startWhoami, tcpBulk, whoami } from "../helpers/traffic.ts";

const PREFIX = "/coreos.com/network/subnets/";

/** Every lease record of the cluster's registry, raw: key (no prefix) → value as stored. */
async function rawLeases(cl: Cluster): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  if (cl.etcd) {
    const lines = (await cl.etcd.etcdctl(["get", "--prefix", PREFIX])).split("\n").filter(Boolean);
    for (let i = 0; i + 1 < lines.length; i += 2) out.set(lines[i]!.slice(PREFIX.length), lines[i + 1]!);
    return out;
  }
  const reg = SqliteRegistry.open({ path: cl.registry.slice("sqlite:".length), log: silentLogger });
  try {
    for (const r of (await reg.list()).records) out.set(r.key, r.value);
  } finally {
    await reg.close();
  }
  return out;
}

async function macOf(lab: Lab, ns: string, dev: string): Promise<string> {
  const j = JSON.parse(await lab.must(ns, ["ip", "-json", "link", "show", "dev", dev])) as {
    address: string;
  }[];
  return j[0]!.address;
}

/** Polls until one ping gets through (a bridge the CNI plugin just made may still be in DAD), then sends three. */
async function reach(lab: Lab, fromNs: string, to: string): Promise<number> {
  await until(
    async () => (await ping(lab, fromNs, to, { count: 1 })).received === 1,
    `${fromNs} → ${to}`,
    15_000,
  );
  return (await ping(lab, fromNs, to)).received;
}

const CASES = [
  { backend: "vxlan", registry: "sqlite" },
  { backend: "vxlan", registry: "etcd" },
  { backend: "host-gw", registry: "sqlite" },
  { backend: "host-gw", registry: "etcd" },
] as const;

for (const c of CASES)
  describe.skipIf(!isRoot())(`dual stack: 2 nodes ${c.backend}, ${c.registry}`, () => {
    let cl: Cluster;
    beforeAll(async () => {
      cl = await Cluster.create({
        backends: [c.backend, c.backend],
        registry: c.registry,
        ipv6: true,
        ipMasq: true,
        pods: "cni",
        tag: "ds",
      });
    }, 120_000);
    afterAll(async () => {
      await cl?.close();
    });
    const n = (i: number) => cl.nodes[i]!;
    const pod = (i: number) => n(i).pods[0]!;
    const mtu = c.backend === "vxlan" ? 1430 : 1500;

    test("subnet.env, the registry key and the lease JSON, byte for byte as flanneld writes them", async () => {
      const raw = await rawLeases(cl);
      expect(raw.size).toBe(2);
      for (const node of cl.nodes) {
        const text = readFileSync(node.subnetFile, "utf8");
        const env = parseSubnetEnv(text);
        const v4 = env.subnet;
        const v6 = env.subnet6!;
        expect(formatCidr6(v6)).toMatch(/^fd00:19:0:[0-9a-f]{1,2}::\/64$/);
        expect(text).toBe(
          "FLANNEL_NETWORK=198.19.0.0/16\n" +
            `FLANNEL_SUBNET=${formatCidr(v4).replace(".0/24", ".1/24")}\n` +
            `FLANNEL_IPV6_NETWORK=${IPV6_NETWORK}\n` +
            `FLANNEL_IPV6_SUBNET=${formatCidr6(v6).replace("::/64", "::1/64")}\n` +
            `FLANNEL_MTU=${mtu}\n` +
            "FLANNEL_IPMASQ=true\n",
        );
        const key = `${formatCidr(v4).replace("/", "-")}&${formatCidr6(v6).replace("/", "-")}`;
        const value = raw.get(key);
        expect(value).toBeDefined();
        if (c.backend === "vxlan")
          expect(value).toBe(
            `{"PublicIP":"${node.ip}","PublicIPv6":"${node.ip6}","BackendType":"vxlan",` +
              `"BackendData":{"VNI":1,"VtepMAC":"${await macOf(cl.lab, node.ns, "flannel.1")}"},` +
              `"BackendV6Data":{"VNI":1,"VtepMAC":"${await macOf(cl.lab, node.ns, "flannel-v6.1")}"}}`,
          );
        else
          expect(value).toBe(`{"PublicIP":"${node.ip}","PublicIPv6":"${node.ip6}","BackendType":"host-gw"}`);
        // status and the leases command show both families
        const s = await status(cl.lab, node.ns);
        expect([s.network6, s.lease?.subnet6, s.lease?.publicIpv6]).toEqual([
          IPV6_NETWORK,
          formatCidr6(v6),
          node.ip6,
        ]);
      }
      // from a node: that is where etcd is reachable
      const listed = await cl.lab.exec(n(0).ns, [requireBinary(), "leases", "--json", cl.registryFlag]);
      const rows = (JSON.parse(listed.stdout) as { leases: { subnet6?: string; publicIpv6?: string }[] })
        .leases;
      expect(rows.map((r) => r.publicIpv6).sort()).toEqual(cl.nodes.map((x) => x.ip6).sort());
    });

    test("CNI pods get an address of each family; pods reach each other across nodes over IPv4 and IPv6", async () => {
      for (const i of [0, 1]) {
        const env = parseSubnetEnv(readFileSync(n(i).subnetFile, "utf8"));
        expect(pod(i).ip6).toBeDefined();
        expect(pod(i).ip6!.startsWith(formatCidr6(env.subnet6!).replace("::/64", ":"))).toBe(true);
      }
      for (const [a, b] of [
        [0, 1],
        [1, 0],
      ] as const) {
        expect(await reach(cl.lab, pod(a).ns, pod(b).ip)).toBe(3);
        expect(await reach(cl.lab, pod(a).ns, pod(b).ip6!)).toBe(3);
      }
    }, 60_000);

    test("TCP across nodes over IPv6 and over IPv4", async () => {
      const bytes = 20_000_000;
      expect(await tcpBulk(cl.lab, pod(0).ns, pod(1).ns, pod(1).ip6!, bytes)).toBe(bytes);
      expect(await tcpBulk(cl.lab, pod(1).ns, pod(0).ns, pod(0).ip6!, bytes)).toBe(bytes);
      expect(await tcpBulk(cl.lab, pod(0).ns, pod(1).ns, pod(1).ip, bytes)).toBe(bytes);
    }, 90_000);

    test("node → remote pod over IPv6; MTU-sized IPv6 packets cross, bigger ones with DF are refused loudly", async () => {
      expect(await reach(cl.lab, n(0).ns, pod(1).ip6!)).toBe(3);
      // ICMPv6 echo: 40 bytes of IPv6 header and 8 of ICMPv6 header
      const full = await ping(cl.lab, pod(0).ns, pod(1).ip6!, { size: mtu - 48 });
      expect(full.received).toBe(3);
      const over = await ping(cl.lab, n(0).ns, pod(1).ip6!, { size: mtu - 48 + 1, count: 2 });
      expect(over.received).toBe(0);
      expect(over.out).toMatch(/[Mm]essage too long|[Pp]acket too big|mtu ?= ?\d+/);
    }, 30_000);

    test("IPv6 pods leaving the cluster are masqueraded to the node's IPv6 address (table ip6 tartan)", async () => {
      const port = startWhoami(cl.lab, cl.externalNs, 7100, { ipv6: true });
      expect(await whoami(cl.lab, pod(1).ns, EXTERNAL_IP6, port)).toBe(n(1).ip6!);
      const p2 = startWhoami(cl.lab, pod(0).ns, 7101, { ipv6: true });
      expect(await whoami(cl.lab, pod(1).ns, pod(0).ip6!, p2)).toBe(pod(1).ip6!);
      const tables = await cl.lab.must(n(1).ns, ["nft", "list", "tables"]);
      expect(tables).toContain("table ip tartan");
      expect(tables).toContain("table ip6 tartan");
    }, 30_000);

    test("tartan doctor: every check ok, the IPv6 ones too; a deleted IPv6 route is named and --fix puts it back", async () => {
      const cniDir = join(cl.lab.dir, "cni-net.d");
      if (!existsSync(cniDir)) mkdirSync(cniDir);
      copyFileSync(join(ROOT, "deploy/cni/10-tartan.conflist"), join(cniDir, "10-tartan.conflist"));
      const doctor = async (...args: string[]) => {
        const r = await cl.lab.exec(n(0).ns, [
          requireBinary(),
          "doctor",
          "--json",
          `--cni-conf-dir=${cniDir}`,
          ...args,
        ]);
        return { code: r.code, report: JSON.parse(r.stdout) as DoctorReport };
      };
      const notOk = (r: { report: DoctorReport }) =>
        r.report.checks.filter((x) => x.status !== "ok").map((x) => `${x.id}: ${x.finding}`);
      const healthy = await doctor("--no-probe");
      expect(notOk(healthy)).toEqual([]);
      expect(healthy.report.checks.map((x) => x.id)).toEqual(
        expect.arrayContaining(["ipv6-forward", "ipv6-datapath", "ipv6-routes", "ipv6-masquerade"]),
      );
      const peer6 = formatCidr6(parseSubnetEnv(readFileSync(n(1).subnetFile, "utf8")).subnet6!);
      await cl.lab.must(n(0).ns, ["ip", "-6", "route", "del", peer6]);
      const broken = await doctor("--no-probe");
      const routes = broken.report.checks.find((x) => x.id === "ipv6-routes")!;
      expect([routes.status, broken.code]).toEqual(["problem", 1]);
      expect(routes.finding).toContain(`${peer6}: route ${peer6} via`);
      const fixed = await doctor("--fix", "--no-probe");
      expect(fixed.report.fixes?.find((x) => x.id === "ipv6-routes")?.changed.join("\n")).toContain(
        `route replace ${peer6} via`,
      );
      expect(notOk(fixed)).toEqual([]);
      expect(await reach(cl.lab, pod(0).ns, pod(1).ip6!)).toBe(3);
    }, 60_000);

    if (c.backend === "vxlan")
      test("flannel-v6.1 is the device flanneld makes, with flanneld's entries for the peer", async () => {
        for (const [i, j] of [
          [0, 1],
          [1, 0],
        ] as const) {
          const dev = JSON.parse(
            await cl.lab.must(n(i).ns, ["ip", "-json", "-details", "link", "show", "dev", "flannel-v6.1"]),
          )[0] as { mtu: number; linkinfo: { info_data: Record<string, unknown> } };
          expect(dev.mtu).toBe(1430);
          expect(dev.linkinfo.info_data).toMatchObject({
            id: 1,
            local6: n(i).ip6,
            port: 8472,
            learning: false,
          });
          const env = parseSubnetEnv(readFileSync(n(i).subnetFile, "utf8"));
          const addrs = await cl.lab.must(n(i).ns, [
            "ip",
            "-6",
            "addr",
            "show",
            "dev",
            "flannel-v6.1",
            "scope",
            "global",
          ]);
          expect(addrs).toContain(`inet6 ${formatIp6(env.subnet6!.ip)}/128`);
          const peer6 = parseSubnetEnv(readFileSync(n(j).subnetFile, "utf8")).subnet6!;
          const vtep = formatIp6(peer6.ip);
          const peerMac = await macOf(cl.lab, n(j).ns, "flannel-v6.1");
          expect(await cl.lab.must(n(i).ns, ["ip", "-6", "neigh", "show", "dev", "flannel-v6.1"])).toContain(
            `${vtep} lladdr ${peerMac} PERMANENT`,
          );
          expect(await cl.lab.must(n(i).ns, ["bridge", "fdb", "show", "dev", "flannel-v6.1"])).toContain(
            `${peerMac} dst ${n(j).ip6} self permanent`,
          );
          expect(await cl.lab.must(n(i).ns, ["ip", "-6", "route", "show", formatCidr6(peer6)])).toContain(
            `via ${vtep} dev flannel-v6.1`,
          );
        }
      });
    if (c.backend === "vxlan")
      test("flannel-v6.1 deleted by hand is rebuilt with its MAC; a restarted agent adopts both devices", async () => {
        const node = n(0);
        const mac6 = await macOf(cl.lab, node.ns, "flannel-v6.1");
        const before = (await status(cl.lab, node.ns)).metrics.repairs;
        await cl.lab.must(node.ns, ["ip", "link", "del", "flannel-v6.1"]);
        await until(
          async () => (await status(cl.lab, node.ns)).metrics.repairs > before,
          "the agent to rebuild flannel-v6.1",
          30_000,
        );
        expect(await macOf(cl.lab, node.ns, "flannel-v6.1")).toBe(mac6);
        expect(await reach(cl.lab, pod(0).ns, pod(1).ip6!)).toBe(3);
        // a restart adopts what is there: same devices (ifindex), same MACs, traffic flows
        const ifindexOf = async () =>
          (
            JSON.parse(
              await cl.lab.must(node.ns, ["ip", "-json", "link", "show", "dev", "flannel-v6.1"]),
            ) as {
              ifindex: number;
            }[]
          )[0]!.ifindex;
        const ifindex = await ifindexOf();
        await cl.lab.stop(node.agent);
        node.agent = cl.startAgent(node, "agent-1b");
        await waitReady(cl.lab, node.ns, node.agent, 8471, 30_000);
        expect(await ifindexOf()).toBe(ifindex);
        expect(await macOf(cl.lab, node.ns, "flannel-v6.1")).toBe(mac6);
        expect(await reach(cl.lab, pod(0).ns, pod(1).ip6!)).toBe(3);
        expect(await reach(cl.lab, pod(1).ns, pod(0).ip6!)).toBe(3);
      }, 90_000);

    test("tartan cleanup removes the IPv6 side too: flannel-v6.1, IPv6 host-gw routes, table ip6 tartan", async () => {
      const node = n(1);
      await cl.lab.stop(node.agent);
      const d = join(cl.lab.dir, "cleanup-n1");
      const r = await cl.lab.exec(node.ns, [
        requireBinary(),
        "cleanup",
        `--bpffs=${node.bpffs}`,
        `--subnet-file=${node.subnetFile}`,
        `--docker-env=${join(d, "docker_opts.env")}`,
        `--cni-data-dir=${join(d, "flannel")}`,
        `--cni-ipam-dir=${join(d, "networks")}`,
        `--cni-conf-file=${join(d, "10-tartan.conflist")}`,
        `--cni-bin=${join(d, "tartan")}`,
      ]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain("nft table ip tartan, ip6 tartan");
      if (c.backend === "vxlan")
        expect(r.stdout).toContain(
          "vxlan device flannel.1, flannel-v6.1 (with their routes, neighbours and FDB entries)",
        );
      else expect(r.stdout).toMatch(/1 host-gw route\(s\) into fd00:19::\/56/);
      expect((await cl.lab.exec(node.ns, ["ip", "link", "show", "flannel-v6.1"])).code).not.toBe(0);
      expect((await cl.lab.exec(node.ns, ["nft", "list", "table", "ip6", "tartan"])).code).not.toBe(0);
      const routes6 = await cl.lab.must(node.ns, ["ip", "-6", "route", "show"]);
      expect(routes6).not.toMatch(/fd00:19:.* via /);
    }, 60_000);
  });

describe.skipIf(!isRoot())(
  "dual stack: a Tartan vxlan node and a flanneld-style dual-stack node made by hand",
  () => {
    let cl: Cluster;
    let fl: { ns: string; ip: string; ip6?: string; index: number };
    let flPod: Pod;
    const FL_V4 = "198.19.250.0";
    const FL_V6 = "fd00:19:0:fa::";
    const FL_MAC = "0e:44:00:00:00:fa";
    const FL_MAC6 = "0e:66:00:00:00:fa";
    beforeAll(async () => {
      cl = await Cluster.create({
        backends: ["vxlan"],
        registry: "etcd",
        ipv6: true,
        pods: "cni",
        tag: "dm",
      });
    }, 120_000);
    afterAll(async () => {
      await cl?.close();
    });

    test("pods reach each other over both families, both ways; the flannel node needed nothing from Tartan", async () => {
      const lab = cl.lab;
      const t = cl.nodes[0]!;
      fl = await lab.addNode({ ipv6: true });
      const run = (...a: string[]) => lab.must(fl.ns, a);
      await run("sysctl", "-qw", "net.ipv4.ip_forward=1");
      await run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1");
      // flanneld's devices: flannel.1 and flannel-v6.1 (its MTU 1450 asked, 1430 given by the kernel)
      for (const [dev, mac, local, addr] of [
        ["flannel.1", FL_MAC, fl.ip, `${FL_V4}/32`],
        ["flannel-v6.1", FL_MAC6, fl.ip6!, `${FL_V6}/128`],
      ] as const) {
        await run(
          "ip",
          "link",
          "add",
          dev,
          "mtu",
          "1450",
          "address",
          mac,
          "type",
          "vxlan",
          "id",
          "1",
          "local",
          local,
          "dev",
          "eth0",
          "dstport",
          "8472",
          "nolearning",
        );
        await run("ip", "addr", "add", addr, "dev", dev, ...(dev === "flannel-v6.1" ? ["nodad"] : []));
        await run("ip", "link", "set", dev, "up");
      }
      // its subnet.env as flanneld writes it, and a pod on its cni0 from it
      const flDir = join(lab.dir, "flannel");
      mkdirSync(flDir, { recursive: true });
      const flEnv = join(flDir, "subnet.env");
      writeFileSync(
        flEnv,
        `FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.250.1/24\nFLANNEL_IPV6_NETWORK=${IPV6_NETWORK}\nFLANNEL_IPV6_SUBNET=fd00:19:0:fa::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n`,
      );
      flPod = await addPod(lab, fl, flEnv, 2);
      // its lease in etcd, in flanneld's exact key and JSON
      await cl.etcd!.etcdctl([
        "put",
        `${PREFIX}${FL_V4}-24&${FL_V6}-64`,
        `{"PublicIP":"${fl.ip}","PublicIPv6":"${fl.ip6}","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${FL_MAC}"},"BackendV6Data":{"VNI":1,"VtepMAC":"${FL_MAC6}"}}`,
      ]);
      // the flannel node programs Tartan's lease as flanneld does, from what Tartan published
      const raw = await rawLeases(cl);
      const tKey = [...raw.keys()].find((k) => !k.startsWith(FL_V4))!;
      const pair = parseSubnetKey(tKey)!;
      const attrs = JSON.parse(raw.get(tKey)!) as {
        PublicIP: string;
        PublicIPv6: string;
        BackendData: { VtepMAC: string };
        BackendV6Data: { VtepMAC: string };
      };
      expect(attrs.PublicIPv6).toBe(t.ip6!);
      const tV4 = formatCidr(pair.v4);
      const tVtep = tV4.replace("/24", "");
      const tV6 = formatCidr6(pair.v6!);
      const tVtep6 = formatIp6(pair.v6!.ip);
      await run(
        "ip",
        "neigh",
        "replace",
        tVtep,
        "lladdr",
        attrs.BackendData.VtepMAC,
        "dev",
        "flannel.1",
        "nud",
        "permanent",
      );
      await run(
        "bridge",
        "fdb",
        "append",
        attrs.BackendData.VtepMAC,
        "dev",
        "flannel.1",
        "dst",
        attrs.PublicIP,
      );
      await run("ip", "route", "add", tV4, "via", tVtep, "dev", "flannel.1", "onlink");
      await run(
        "ip",
        "neigh",
        "replace",
        tVtep6,
        "lladdr",
        attrs.BackendV6Data.VtepMAC,
        "dev",
        "flannel-v6.1",
        "nud",
        "permanent",
      );
      await run(
        "bridge",
        "fdb",
        "append",
        attrs.BackendV6Data.VtepMAC,
        "dev",
        "flannel-v6.1",
        "dst",
        attrs.PublicIPv6,
      );
      await run("ip", "route", "add", tV6, "via", tVtep6, "dev", "flannel-v6.1", "onlink");

      // Tartan programs the flannel node's lease in both families
      await until(
        async () => (await status(lab, t.ns)).leases.some((l) => l.subnet6 === `${FL_V6}/64` && l.programmed),
        "Tartan to program the flannel node",
      );
      const tPod = t.pods[0]!;
      for (const [from, to] of [
        [tPod, flPod],
        [flPod, tPod],
      ] as const) {
        expect(await reach(lab, from.ns, to.ip)).toBe(3);
        expect(await reach(lab, from.ns, to.ip6!)).toBe(3);
      }
      expect(await tcpBulk(lab, tPod.ns, flPod.ns, flPod.ip6!, 10_000_000)).toBe(10_000_000);
      expect(await tcpBulk(lab, flPod.ns, tPod.ns, tPod.ip6!, 10_000_000)).toBe(10_000_000);
      expect(await tcpBulk(lab, tPod.ns, flPod.ns, flPod.ip, 10_000_000)).toBe(10_000_000);
    }, 120_000);
  },
);

describe.skipIf(!isRoot())("dual stack: the lease lifecycle", () => {
  let lab: Lab;
  let registry: string;
  let node: { ns: string; ip: string; ip6?: string; index: number };
  let subnetFile: string;
  beforeAll(async () => {
    requireBinary();
    lab = new Lab("dl");
    node = await lab.addNode({ ipv6: true });
    registry = `sqlite:${join(lab.dir, "registry.db")}`;
    subnetFile = join(lab.dir, "n1", "subnet.env");
  }, 30_000);
  afterAll(async () => {
    await lab?.cleanup();
  });
  const setConfig = async (conf: object) => {
    const file = join(lab.dir, "net-conf.json");
    writeFileSync(file, JSON.stringify(conf));
    const r = await tartan(["config", "set", file, `--registry=${registry}`]);
    expect(r.code).toBe(0);
    return r;
  };
  const keys = async () => {
    const reg = SqliteRegistry.open({ path: registry.slice("sqlite:".length), log: silentLogger });
    try {
      return (await reg.list()).records.map((r) => r.key).sort();
    } finally {
      await reg.close();
    }
  };
  const run = async (name: string, backend = "alloc") => {
    const p = startAgent(lab, { node, name, registry, backend, subnetFile });
    await waitReady(lab, node.ns, p);
    return p;
  };

  test("IPv6 turned on keeps the node's IPv4 subnet; a restart and a reboot keep both", async () => {
    await setConfig({ Network: "198.19.0.0/16", Backend: { Type: "vxlan" } });
    let p = await run("a1");
    const [v4key] = await keys();
    expect(v4key).toMatch(/^198\.19\.\d+\.0-24$/);
    await lab.stop(p);

    const set = await setConfig({
      Network: "198.19.0.0/16",
      EnableIPv6: true,
      IPv6Network: IPV6_NETWORK,
      Backend: { Type: "vxlan" },
    });
    expect(set.stdout).toContain(
      "IPv6Network fd00:19::/56, IPv6SubnetLen 64, fd00:19:0:1:: – fd00:19:0:ff::",
    );
    p = await run("a2");
    const [dualKey] = await keys();
    expect(dualKey!.startsWith(`${v4key}&fd00:19:0:`)).toBe(true);
    const env = parseSubnetEnv(readFileSync(subnetFile, "utf8"));
    expect(`${formatCidr(env.subnet).replace("/", "-")}&${formatCidr6(env.subnet6!).replace("/", "-")}`).toBe(
      dualKey!,
    );
    expect(readFileSync(join(lab.dir, "state", "a2.lease"), "utf8").trim()).toBe(dualKey!);
    await lab.stop(p);

    // restart: subnet.env names both halves
    p = await run("a2");
    expect(await keys()).toEqual([dualKey!]);
    await lab.stop(p);
    // reboot: /run is empty, the lease is gone (expired); the state file alone brings both back
    rmSync(subnetFile);
    const reg = SqliteRegistry.open({ path: registry.slice("sqlite:".length), log: silentLogger });
    await reg.delete(dualKey!);
    await reg.close();
    p = await run("a2");
    expect(await keys()).toEqual([dualKey!]);
    await lab.stop(p);
  }, 90_000);

  test("a node without an IPv6 underlay address is told so", async () => {
    const bare = await lab.addNode();
    const p = startAgent(lab, {
      node: bare,
      name: "b1",
      registry,
      backend: "vxlan",
      subnetFile: join(lab.dir, "b1", "subnet.env"),
    });
    await p.proc.exited;
    expect(p.proc.exitCode).toBe(1);
    expect((await lab.log(p)).trim().split("\n").at(-1)).toBe(
      "tartan: the network config is dual stack (EnableIPv6) but the underlay eth0 has no global IPv6 address; give it one, or name this node's IPv6 address with --public-ipv6",
    );
  }, 30_000);
});
