/**
 * The control plane end to end with the real binary: agents in network namespaces on
 * one embedded (sqlite) registry lease distinct subnets, write subnet.env, serve their
 * endpoints, keep their subnet across a restart, and fail cleanly when the range is full
 * or their input is bad.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { containsCidr, parseCidr } from "../../src/config/cidr.ts";
import { parseSubnetEnv } from "../../src/config/subnet-env.ts";
import { attachments } from "../helpers/bpf-attachments.ts";
import { Lab, until } from "../helpers/netns.ts";
import { isRoot, requireBinary, startAgent, status, tartan, waitReady } from "../helpers/tartan.ts";

const NETWORK = "198.19.0.0/16";

describe.skipIf(!isRoot())("control plane on the embedded registry", () => {
  let lab: Lab;
  let registry: string;
  const nodes: { ns: string; ip: string; index: number }[] = [];

  beforeAll(async () => {
    requireBinary();
    lab = new Lab("cp");
    registry = `sqlite:${join(lab.dir, "registry.db")}`;
    writeFileSync(
      join(lab.dir, "net.json"),
      JSON.stringify({ Network: NETWORK, Backend: { Type: "alloc" } }),
    );
    const r = await tartan(["config", "set", join(lab.dir, "net.json"), `--registry=${registry}`]);
    expect(r.code).toBe(0);
    for (let i = 0; i < 3; i++) nodes.push(await lab.addNode());
  });
  afterAll(async () => {
    await lab?.cleanup();
  });

  test("3 agents: distinct subnets, subnet.env, /healthz, /readyz, every lease everywhere; restart keeps the subnet", async () => {
    const subnetFile = (i: number) => join(lab.dir, `n${i}`, "subnet.env");
    const procs = nodes.map((n, i) =>
      startAgent(lab, { node: n, name: `n${i}`, registry, subnetFile: subnetFile(i) }),
    );
    for (const [i, n] of nodes.entries()) await waitReady(lab, n.ns, procs[i]!);

    const envs = nodes.map((_, i) => parseSubnetEnv(readFileSync(subnetFile(i), "utf8")));
    const subnets = envs.map((e) => `${e.subnet.ip}/${e.subnet.len}`);
    expect(new Set(subnets).size).toBe(3);
    for (const e of envs) {
      expect(containsCidr(parseCidr(NETWORK)!, e.subnet)).toBe(true);
      expect(e.subnet.len).toBe(24);
      expect(e.mtu).toBe(1500);
      expect(e.ipMasq).toBe(false);
    }
    // flannel's exact text
    expect(readFileSync(subnetFile(0), "utf8")).toMatch(
      /^FLANNEL_NETWORK=198\.19\.0\.0\/16\nFLANNEL_SUBNET=198\.19\.\d+\.1\/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n$/,
    );

    for (const n of nodes) {
      expect((await lab.http(n.ns, "/healthz")).status).toBe(200);
      expect((await lab.http(n.ns, "/readyz")).status).toBe(200);
      await until(async () => {
        const body = JSON.parse((await lab.http(n.ns, "/v1/leases")).body) as {
          leases: { publicIp: string }[];
        };
        return body.leases.length === 3;
      }, `3 leases at ${n.ns}`);
      const s = await status(lab, n.ns);
      expect(s.leases.map((l) => l.publicIp).sort()).toEqual(nodes.map((x) => x.ip).sort());
      expect(s.lease?.publicIp).toBe(n.ip);
    }

    // SIGKILL node 1 and start it again: same subnet
    const before = readFileSync(subnetFile(1), "utf8");
    procs[1]!.proc.kill("SIGKILL");
    await procs[1]!.proc.exited;
    const again = startAgent(lab, { node: nodes[1]!, name: "n1-again", registry, subnetFile: subnetFile(1) });
    await waitReady(lab, nodes[1]!.ns, again);
    expect(readFileSync(subnetFile(1), "utf8")).toBe(before);
    expect(await lab.log(again)).toContain("reusing the lease that carries our public IP");

    // SIGTERM stops cleanly with exit 0
    expect(await lab.stop(again)).toBe(0);
    expect(await lab.log(again)).toContain("stopping; the datapath stays in place");
  }, 60_000);

  test("a restarted agent whose lease is gone gets the subnet from its subnet.env back", async () => {
    const node = nodes[2]!;
    const file = join(lab.dir, "n2", "subnet.env");
    const want = parseSubnetEnv(readFileSync(file, "utf8")).subnet;
    // stop every agent still running on node 2, delete its lease by hand
    for (const p of lab.processes.filter((x) => x.name === "n2")) await lab.stop(p);
    const key = `198.19.${(want.ip >>> 8) & 255}.0-24`;
    const { SqliteRegistry } = await import("../../src/registry/sqlite.ts");
    const { silentLogger } = await import("../../src/log.ts");
    const reg = SqliteRegistry.open({ path: registry.slice(7), log: silentLogger });
    expect(await reg.delete(key)).toBe(true);
    await reg.close();
    const p = startAgent(lab, { node, name: "n2-prev", registry, subnetFile: file });
    await waitReady(lab, node.ns, p);
    expect(parseSubnetEnv(readFileSync(file, "utf8")).subnet).toEqual(want);
    expect(await lab.log(p)).toContain("chosen=previous");
    await lab.stop(p);
  }, 60_000);
});

describe.skipIf(!isRoot())("20 agents racing for 16 subnets", () => {
  let lab: Lab;
  afterAll(async () => {
    await lab?.cleanup();
  });

  test("16 distinct leases, 4 clean 'no free subnet' errors, nothing corrupted", async () => {
    lab = new Lab("race");
    const registry = `sqlite:${join(lab.dir, "registry.db")}`;
    writeFileSync(
      join(lab.dir, "net.json"),
      JSON.stringify({ Network: "198.19.0.0/20", SubnetMin: "198.19.0.0", Backend: { Type: "alloc" } }),
    );
    expect((await tartan(["config", "set", join(lab.dir, "net.json"), `--registry=${registry}`])).code).toBe(
      0,
    );
    const node = await lab.addNode();
    const procs = Array.from({ length: 20 }, (_, i) =>
      startAgent(lab, {
        node,
        name: `a${i}`,
        registry,
        subnetFile: join(lab.dir, `a${i}`, "subnet.env"),
        httpPort: 9000 + i,
        extra: [`--public-ip=198.18.1.${i + 1}`],
      }),
    );
    // the losers exit by themselves; the winners become ready
    await until(
      () => procs.filter((p) => p.proc.exitCode !== null).length >= 4,
      "4 agents to give up",
      30_000,
    );
    const failed = procs.filter((p) => p.proc.exitCode !== null);
    expect(failed).toHaveLength(4);
    for (const p of failed) {
      expect(p.proc.exitCode).toBe(1);
      const log = await lab.log(p);
      expect(log).toContain(
        "tartan: no free subnet: all 16 /24 subnets between SubnetMin and SubnetMax of 198.19.0.0/20 are leased",
      );
    }
    const winners = procs.filter((p) => p.proc.exitCode === null);
    for (const p of winners) await waitReady(lab, node.ns, p, 9000 + procs.indexOf(p));
    const r = await tartan(["leases", `--registry=${registry}`, "--json"]);
    expect(r.code).toBe(0);
    const leases = JSON.parse(r.stdout).leases as { subnet: string; publicIp: string; valid: boolean }[];
    expect(leases).toHaveLength(16);
    expect(leases.every((l) => l.valid)).toBe(true);
    expect(new Set(leases.map((l) => l.subnet)).size).toBe(16);
    expect(new Set(leases.map((l) => l.publicIp)).size).toBe(16);
    // every winner's subnet.env names its own lease
    for (const p of winners) {
      const env = parseSubnetEnv(readFileSync(join(lab.dir, p.name, "subnet.env"), "utf8"));
      const mine = leases.find((l) => l.publicIp === `198.18.1.${Number(p.name.slice(1)) + 1}`);
      expect(
        `${(env.subnet.ip >>> 24) & 255}.${(env.subnet.ip >>> 16) & 255}.${(env.subnet.ip >>> 8) & 255}.0/24`,
      ).toBe(mine!.subnet);
    }
  }, 90_000);
});

describe.skipIf(!isRoot())("bad input: a clear error, nothing changed", () => {
  let lab: Lab;
  let node: { ns: string };
  beforeAll(async () => {
    lab = new Lab("bad");
    node = await lab.addNode();
  });
  afterAll(async () => {
    await lab?.cleanup();
  });

  const runAgent = (args: string[]) =>
    lab.exec(node.ns, [requireBinary(), "agent", "--iface=eth0", "--http=127.0.0.1:8471", ...args]);

  test("unknown backend", async () => {
    const r = await runAgent(["--backend=foo"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("tartan: --backend=foo: must be one of ebpf-vxlan, vxlan, host-gw, alloc\n");
  });

  test("invalid IPs and CIDRs", async () => {
    expect((await runAgent(["--public-ip=198.18.0.300"])).stderr).toContain(
      "--public-ip=198.18.0.300: must be an IPv4 address",
    );
    const cfg = join(lab.dir, "bad-net.json");
    writeFileSync(cfg, JSON.stringify({ Network: "198.19.0.0/33" }));
    const r = await runAgent([
      `--registry=sqlite:${join(lab.dir, "r0.db")}`,
      `--net-config-path=${cfg}`,
      `--subnet-file=${join(lab.dir, "s0.env")}`,
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      "network config: Network=198.19.0.0/33: must be an IPv4 CIDR like 10.244.0.0/16",
    );
    expect(await Bun.file(join(lab.dir, "s0.env")).exists()).toBe(false);
  });

  test("malformed network config in the registry is refused before any lease is taken", async () => {
    const dbPath = join(lab.dir, "r1.db");
    const { SqliteRegistry } = await import("../../src/registry/sqlite.ts");
    const { silentLogger } = await import("../../src/log.ts");
    const reg = SqliteRegistry.open({ path: dbPath, log: silentLogger });
    await reg.setConfig('{"Network":"198.19.0.0/16","SubnetLen":31}');
    await reg.close();
    const r = await runAgent([`--registry=sqlite:${dbPath}`, `--subnet-file=${join(lab.dir, "s1.env")}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("network config: SubnetLen=31: must be at most 30");
    expect(r.stderr).toContain("tartan config set FILE");
    const after = SqliteRegistry.open({ path: dbPath, log: silentLogger });
    expect((await after.list()).records).toEqual([]);
    await after.close();
  });

  test("unreadable or corrupt registry file", async () => {
    const dbPath = join(lab.dir, "corrupt.db");
    const junk = "not sqlite\n".repeat(500);
    writeFileSync(dbPath, junk);
    const r = await runAgent([`--registry=sqlite:${dbPath}`, `--subnet-file=${join(lab.dir, "s2.env")}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/sqlite registry .*corrupt\.db is corrupt or not a registry/);
    expect(readFileSync(dbPath, "utf8")).toBe(junk);
    const dir = await runAgent([`--registry=sqlite:${lab.dir}`, `--subnet-file=${join(lab.dir, "s2.env")}`]);
    expect(dir.code).toBe(1);
    expect(dir.stderr).toContain("is a directory");
  });

  test("corrupt subnet.env is refused and left as it was", async () => {
    const env = join(lab.dir, "corrupt-subnet.env");
    writeFileSync(env, "FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=banana\n");
    const cfg = join(lab.dir, "ok-net.json");
    writeFileSync(cfg, JSON.stringify({ Network: "198.19.0.0/16", Backend: { Type: "alloc" } }));
    const dbPath = join(lab.dir, "r3.db");
    const r = await runAgent([
      `--registry=sqlite:${dbPath}`,
      `--net-config-path=${cfg}`,
      `--subnet-file=${env}`,
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `--subnet-file=${env} is corrupt (FLANNEL_SUBNET=banana is not an address/len`,
    );
    expect(readFileSync(env, "utf8")).toBe("FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=banana\n");
    expect(await Bun.file(dbPath).exists()).toBe(false);
  });
});

describe.skipIf(!isRoot())("one binary", () => {
  test("dist/tartan copied alone into an empty directory runs the eBPF datapath (the object is embedded)", async () => {
    const lab = new Lab("bin");
    try {
      const { copyFileSync, readdirSync } = await import("node:fs");
      const alone = join(lab.dir, "alone");
      (await import("node:fs")).mkdirSync(alone);
      copyFileSync(requireBinary(), join(alone, "tartan"));
      (await import("node:fs")).chmodSync(join(alone, "tartan"), 0o755);
      expect(readdirSync(alone)).toEqual(["tartan"]);
      const registry = `sqlite:${join(lab.dir, "r.db")}`;
      writeFileSync(join(lab.dir, "net.json"), JSON.stringify({ Network: "198.19.0.0/16" }));
      const r = await lab.exec((await lab.addNode()).ns, [
        join(alone, "tartan"),
        "config",
        "set",
        join(lab.dir, "net.json"),
        `--registry=${registry}`,
      ]);
      expect(r.code).toBe(0);
      const node = { ns: lab.namespaces.at(-1)! };
      const bpffs = `/sys/fs/bpf/tartan-test-${lab.prefix}`;
      lab.bpffsDirs.push(bpffs);
      const p = lab.spawn(node.ns, "alone", [
        "sh",
        "-c",
        `cd / && exec ${join(alone, "tartan")} agent --backend=ebpf-vxlan --iface=eth0 --node-name=alone --registry=${registry} --subnet-file=${join(lab.dir, "s.env")} --bpffs=${bpffs} --healthz-ip=127.0.0.1 --healthz-port=10256`,
      ]);
      await waitReady(lab, node.ns, p);
      // flanneld's own health listener, beside the status endpoint
      expect(await lab.http(node.ns, "/healthz", 10256)).toMatchObject({ status: 200 });
      const s = await status(lab, node.ns);
      expect(s.backend).toBe("ebpf-vxlan");
      expect(s.health.ok).toBe(true);
      expect(await attachments(lab, node.ns)).toContain("eth0 tcx/ingress tartan_decap_tc");
      await lab.stop(p);
      // every path cleanup may remove lives in the lab
      const cleanup = [
        join(alone, "tartan"),
        "cleanup",
        `--bpffs=${bpffs}`,
        `--subnet-file=${join(lab.dir, "s.env")}`,
        `--cni-data-dir=${join(lab.dir, "cni")}`,
        `--cni-ipam-dir=${join(lab.dir, "ipam")}`,
        `--cni-conf-file=${join(lab.dir, "conf")}`,
        `--cni-bin=${join(lab.dir, "bin")}`,
      ];
      const c = await lab.exec(node.ns, cleanup);
      expect(c.code).toBe(0);
      expect(c.stdout).toContain("removed eBPF programs");
      expect((await attachments(lab, node.ns)).filter((x) => x.includes("tartan_"))).toEqual([]);
      const again = await lab.exec(node.ns, cleanup);
      expect(again.code).toBe(0);
      expect(again.stdout).toContain("nothing to remove");
    } finally {
      await lab.cleanup();
    }
  }, 60_000);
});

describe.skipIf(!isRoot())("stopping while starting", () => {
  test("SIGTERM while waiting for a network config exits 0 and leaves nothing half-done", async () => {
    const lab = new Lab("stw");
    try {
      const node = await lab.addNode();
      const p = startAgent(lab, {
        node,
        name: "waiting",
        registry: `sqlite:${join(lab.dir, "empty.db")}`,
        subnetFile: join(lab.dir, "s.env"),
      });
      await until(
        async () => (await lab.http(node.ns, "/readyz")).body.includes("waiting for the network config"),
        "the agent to wait for a config",
      );
      expect(await lab.stop(p)).toBe(0);
      expect(await Bun.file(join(lab.dir, "s.env")).exists()).toBe(false);
    } finally {
      await lab.cleanup();
    }
  }, 30_000);
});
