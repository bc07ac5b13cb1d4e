/**
 * The CNI plugin driven exactly as a container runtime drives it: the compiled binary
 * run with CNI_* variables and the network config on stdin, inside a node namespace,
 * a real network namespace as the container, and the real `bridge` and `host-local`
 * plugins from /usr/lib/cni. host-local's and the plugin's data dirs live in the lab's
 * temp dir, so a run leaves nothing behind. TARTAN_CNI_BIN overrides dist/tartan.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { containsIp, parseCidr, parseIp4 } from "../../src/config/cidr.ts";
import { parseSubnetEnv } from "../../src/config/subnet-env.ts";
import { attachments } from "../helpers/bpf-attachments.ts";
import { type ExecResult, Lab, type LabProcess, until } from "../helpers/netns.ts";
import { ping } from "../helpers/pods.ts";
import { isRoot, requireBinary, startAgent, status, TARTAN, waitReady } from "../helpers/tartan.ts";

const CNI_PATH = "/usr/lib/cni";
const BIN = process.env.TARTAN_CNI_BIN ?? TARTAN;

type Node = { ns: string; ip: string; index: number };

interface CniRun extends ExecResult {
  json: Record<string, unknown>;
}

/** Files (not directories) under `dir`, relative, sorted. */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p, `${rel}${name}/`);
      else out.push(`${rel}${name}`);
    }
  };
  walk(dir, "");
  return out.sort();
}

/** One node of the test: its namespace, subnet.env, data dirs and the plugin config. */
class CniNode {
  readonly subnetFile: string;
  readonly dataDir: string;
  readonly ipamDir: string;
  constructor(
    readonly lab: Lab,
    readonly node: Node,
    /** Extra keys of the plugin config (e.g. the agent's bpffs). */
    readonly extraConf: Record<string, string> = {},
  ) {
    const base = join(lab.dir, `cni-n${node.index}`);
    this.subnetFile = join(base, "subnet.env");
    this.dataDir = join(base, "flannel");
    this.ipamDir = join(base, "networks");
    mkdirSync(base, { recursive: true });
  }

  writeSubnetEnv(subnet: string, mtu = 1450, ipMasq = false): void {
    writeFileSync(
      this.subnetFile,
      `FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=${subnet}\nFLANNEL_MTU=${mtu}\nFLANNEL_IPMASQ=${ipMasq}\n`,
    );
  }

  conf(extra: Record<string, unknown> = {}): Record<string, unknown> {
    // what deploy/cni/10-tartan.conflist gives the plugin, with the data dirs in the lab
    return {
      cniVersion: "1.0.0",
      name: "cbr0",
      type: "tartan",
      subnetFile: this.subnetFile,
      dataDir: this.dataDir,
      ipam: { dataDir: this.ipamDir },
      delegate: { hairpinMode: true, isDefaultGateway: true },
      ...this.extraConf,
      ...extra,
    };
  }

  /** Runs the plugin as the runtime does: /opt/cni/bin/tartan with no arguments, CNI_* set. */
  async run(
    command: string,
    cid: string,
    netns: string,
    stdin: string | Record<string, unknown>,
    opts: { ifname?: string; args?: string[] } = {},
  ): Promise<CniRun> {
    const env = [
      `CNI_COMMAND=${command}`,
      `CNI_CONTAINERID=${cid}`,
      `CNI_NETNS=${netns}`,
      `CNI_IFNAME=${opts.ifname ?? "eth0"}`,
      `CNI_PATH=${CNI_PATH}`,
    ];
    const input = typeof stdin === "string" ? stdin : JSON.stringify(stdin);
    const r = await this.lab.exec(this.node.ns, ["env", ...env, BIN, ...(opts.args ?? [])], input);
    let json: Record<string, unknown> = {};
    try {
      json = JSON.parse(r.stdout) as Record<string, unknown>;
    } catch {}
    return { ...r, json };
  }

  async add(cid: string, netns: string): Promise<CniRun> {
    const r = await this.run("ADD", cid, netns, this.conf());
    if (r.code !== 0) throw new Error(`ADD ${cid} exited ${r.code}: ${r.stdout} ${r.stderr}`);
    return r;
  }

  async del(cid: string, netns: string): Promise<CniRun> {
    const r = await this.run("DEL", cid, netns, this.conf());
    if (r.code !== 0) throw new Error(`DEL ${cid} exited ${r.code}: ${r.stdout} ${r.stderr}`);
    return r;
  }

  async links(): Promise<string[]> {
    const out = await this.lab.must(this.node.ns, ["ip", "-json", "link", "show"]);
    return (JSON.parse(out) as { ifname: string }[]).map((l) => l.ifname).sort();
  }

  async bridgeAddrs(): Promise<string[]> {
    const out = await this.lab.must(this.node.ns, ["ip", "-json", "-4", "addr", "show", "dev", "cni0"]);
    const rows = JSON.parse(out) as { addr_info: { local: string; prefixlen: number }[] }[];
    return rows[0]!.addr_info.map((a) => `${a.local}/${a.prefixlen}`);
  }

  /** host-local's reservations: one file per leased address. */
  reserved(): string[] {
    return filesUnder(join(this.ipamDir, "cbr0")).filter((f) => parseIp4(f) !== null);
  }
}

const netnsPath = (ns: string) => `/run/netns/${ns}`;

async function podAddr(lab: Lab, ns: string): Promise<{ ip: string; len: number; mtu: number } | null> {
  const r = await lab.exec(ns, ["ip", "-json", "-4", "addr", "show", "dev", "eth0"]);
  if (r.code !== 0) return null;
  const row = (
    JSON.parse(r.stdout) as { mtu: number; addr_info: { local: string; prefixlen: number }[] }[]
  )[0];
  const a = row?.addr_info[0];
  return a ? { ip: a.local, len: a.prefixlen, mtu: row!.mtu } : null;
}

async function requireCniBinary(): Promise<void> {
  if (BIN === TARTAN) requireBinary();
  const p = Bun.spawn([BIN], {
    env: { ...process.env, CNI_COMMAND: "VERSION" },
    stdin: new TextEncoder().encode('{"cniVersion":"1.0.0"}'),
    stdout: "pipe",
    stderr: "pipe",
  });
  const out = await new Response(p.stdout).text();
  await p.exited;
  if (!out.includes("supportedVersions"))
    throw new Error(
      `${BIN} does not act as a CNI plugin when CNI_COMMAND is set (got ${JSON.stringify(out.slice(0, 200))}): ` +
        "wire runCni from src/cni/plugin.ts into src/main.ts and run scripts/build",
    );
}

describe.skipIf(!isRoot())("CNI plugin through the binary, real bridge + host-local", () => {
  let lab: Lab;
  let n1: CniNode;

  beforeAll(async () => {
    await requireCniBinary();
    lab = new Lab("cni");
    n1 = new CniNode(lab, await lab.addNode());
    n1.writeSubnetEnv("198.19.1.1/24");
  });
  afterAll(async () => {
    await lab?.cleanup();
  });

  test("VERSION, as /opt/cni/bin/tartan and as `tartan cni`", async () => {
    for (const args of [[], ["cni"]]) {
      const r = await n1.run("VERSION", "", "", { cniVersion: "0.4.0" }, { args });
      expect(r.code).toBe(0);
      expect(r.json).toEqual({
        cniVersion: "0.4.0",
        supportedVersions: ["0.3.0", "0.3.1", "0.4.0", "1.0.0"],
      });
    }
  });

  test("ADD gives the pod an address in the node's subnet; CHECK passes; DEL frees it", async () => {
    const pod = await lab.addNamespace("pa");
    const add = await n1.add("pod-a", netnsPath(pod));
    const subnet = parseCidr("198.19.1.0/24")!;
    const got = await podAddr(lab, pod);
    expect(got).not.toBeNull();
    expect(containsIp(subnet, parseIp4(got!.ip)!)).toBe(true);
    expect(got!.ip).not.toBe("198.19.1.1");
    expect(got!.len).toBe(24);
    expect(got!.mtu).toBe(1450);
    // no agent wrote where its datapath lives: ADD succeeds (the bridge carries the pod) and says why on stderr
    expect(add.stderr).toMatch(
      /level=warn msg="no datapath file from the tartan agent[^"]*" .*file=\S+subnet\.datapath\.json/,
    );
    // the runtime gets a 1.0.0 result naming that address
    expect(add.json.cniVersion).toBe("1.0.0");
    expect((add.json.ips as { address: string }[])[0]!.address).toBe(`${got!.ip}/24`);
    // the pod reaches its gateway (cni0) and has the route to the cluster network
    expect(await n1.bridgeAddrs()).toEqual(["198.19.1.1/24"]);
    expect((await ping(lab, pod, "198.19.1.1", { count: 1 })).received).toBe(1);
    const routes = await lab.must(pod, ["ip", "route", "show", "198.19.0.0/16"]);
    expect(routes).toContain("via 198.19.1.1");
    expect(n1.reserved()).toEqual([got!.ip]);

    const check = await n1.run("CHECK", "pod-a", netnsPath(pod), n1.conf({ prevResult: add.json }));
    expect(check.stdout).toBe("");
    expect(check.code).toBe(0);
    // CHECK notices when the pod's route to the cluster network is gone (and passes again once it is back)
    await lab.must(pod, ["ip", "route", "del", "198.19.0.0/16"]);
    const broken = await n1.run("CHECK", "pod-a", netnsPath(pod), n1.conf({ prevResult: add.json }));
    expect(broken.code).toBe(1);
    expect(broken.json.msg).toContain("198.19.0.0");
    await lab.must(pod, ["ip", "route", "add", "198.19.0.0/16", "via", "198.19.1.1"]);
    expect((await n1.run("CHECK", "pod-a", netnsPath(pod), n1.conf({ prevResult: add.json }))).code).toBe(0);

    await n1.del("pod-a", netnsPath(pod));
    expect(n1.reserved()).toEqual([]);
    expect(await n1.links()).toEqual(["cni0", "eth0", "lo"]);
    expect(filesUnder(n1.dataDir)).toEqual([]);
    expect(await lab.must(pod, ["ip", "-o", "link"])).not.toContain("eth0");
    // DEL again is fine; CHECK of a deleted container is "unknown container"
    expect((await n1.del("pod-a", netnsPath(pod))).code).toBe(0);
    const after = await n1.run("CHECK", "pod-a", netnsPath(pod), n1.conf({ prevResult: add.json }));
    expect(after.code).toBe(1);
    expect(after.json.code).toBe(3);
  }, 30_000);

  test("0.3.1 and 0.4.0 configs: the result comes in that version; CHECK (0.4.0) passes; DEL frees", async () => {
    for (const cniVersion of ["0.3.1", "0.4.0"]) {
      const pod = await lab.addNamespace(`v${cniVersion.replaceAll(".", "")}`);
      const cid = `old-spec-${cniVersion}`;
      const add = await n1.run("ADD", cid, netnsPath(pod), n1.conf({ cniVersion }));
      expect(add.code).toBe(0);
      expect(add.json.cniVersion).toBe(cniVersion);
      const ips = add.json.ips as { version?: string; address: string }[];
      expect(ips[0]!.version).toBe("4");
      expect(ips[0]!.address).toBe(`${(await podAddr(lab, pod))!.ip}/24`);
      if (cniVersion === "0.4.0") {
        const check = await n1.run(
          "CHECK",
          cid,
          netnsPath(pod),
          n1.conf({ cniVersion, prevResult: add.json }),
        );
        expect(check.stdout).toBe("");
        expect(check.code).toBe(0);
      }
      const del = await n1.run("DEL", cid, netnsPath(pod), n1.conf({ cniVersion }));
      expect(del.code).toBe(0);
    }
    expect(n1.reserved()).toEqual([]);
    expect(await n1.links()).toEqual(["cni0", "eth0", "lo"]);
  }, 30_000);

  test("50 ADDs (10 at a time) then 50 DELs leak no address, veth, file or NAT chain", async () => {
    const pods: string[] = [];
    for (let i = 0; i < 50; i++) pods.push(await lab.addNamespace(`m${i}`));
    const ips = new Set<string>();
    for (let i = 0; i < 50; i += 10) {
      const batch = pods.slice(i, i + 10);
      await Promise.all(batch.map((p, j) => n1.add(`many-${i + j}`, netnsPath(p))));
    }
    for (const p of pods) ips.add((await podAddr(lab, p))!.ip);
    expect(ips.size).toBe(50);
    expect(n1.reserved()).toHaveLength(50);
    expect((await n1.links()).filter((l) => l.startsWith("veth"))).toHaveLength(50);
    const natBefore = await lab.must(n1.node.ns, ["iptables-save", "-t", "nat"]);
    expect(natBefore).toContain("CNI-");

    for (let i = 0; i < 50; i += 10) {
      const batch = pods.slice(i, i + 10);
      await Promise.all(batch.map((p, j) => n1.del(`many-${i + j}`, netnsPath(p))));
    }
    expect(n1.reserved()).toEqual([]);
    expect(await n1.links()).toEqual(["cni0", "eth0", "lo"]);
    expect(filesUnder(n1.dataDir)).toEqual([]);
    expect(filesUnder(join(n1.ipamDir, "cbr0")).filter((f) => parseIp4(f) !== null)).toEqual([]);
    const natAfter = await lab.must(n1.node.ns, ["iptables-save", "-t", "nat"]);
    expect(natAfter).not.toContain("CNI-");
  }, 120_000);

  test("malformed stdin, missing subnet.env, unknown CNI_COMMAND: the spec's error JSON, exit 1", async () => {
    const pod = await lab.addNamespace("pe");
    const bad = await n1.run("ADD", "err-1", netnsPath(pod), "{this is not json");
    expect(bad.code).toBe(1);
    expect(bad.json).toMatchObject({ cniVersion: "1.0.0", code: 6 });
    expect(bad.json.msg).toContain("not JSON");

    const missing = await n1.run(
      "ADD",
      "err-2",
      netnsPath(pod),
      n1.conf({ subnetFile: join(lab.dir, "nope.env") }),
    );
    expect(missing.code).toBe(1);
    expect(missing.json).toMatchObject({ cniVersion: "1.0.0", code: 11 });
    expect(missing.json.msg).toContain("nope.env does not exist yet");

    const unknown = await n1.run("FROBNICATE", "err-3", netnsPath(pod), n1.conf());
    expect(unknown.code).toBe(1);
    expect(unknown.json).toEqual({
      cniVersion: "1.0.0",
      code: 4,
      msg: 'unknown CNI_COMMAND: "FROBNICATE" (supported: ADD, DEL, CHECK, VERSION)',
    });

    const old = await n1.run("ADD", "err-4", netnsPath(pod), n1.conf({ cniVersion: "0.2.0" }));
    expect(old.json).toMatchObject({ code: 1 });
    // nothing was set up for any of them
    expect(await podAddr(lab, pod)).toBeNull();
    expect(n1.reserved()).toEqual([]);
  }, 30_000);
});

describe.skipIf(!isRoot())("a node whose subnet changed: the stale cni0 address is repaired", () => {
  let lab: Lab;
  let n: CniNode;
  beforeAll(async () => {
    await requireCniBinary();
    lab = new Lab("cnis");
    n = new CniNode(lab, await lab.addNode());
  });
  afterAll(async () => {
    await lab?.cleanup();
  });

  test("a new pod gets the new subnet, cni0 holds only the new gateway, the old pod's DEL still frees its address", async () => {
    n.writeSubnetEnv("198.19.3.1/24");
    const oldPod = await lab.addNamespace("old");
    await n.add("old", netnsPath(oldPod));
    expect(await n.bridgeAddrs()).toEqual(["198.19.3.1/24"]);

    // the agent leased another subnet (lease expired while the node was down)
    n.writeSubnetEnv("198.19.4.1/24");
    // the trap: the bridge plugin alone refuses every new pod
    const stdin = JSON.stringify({
      cniVersion: "1.0.0",
      name: "cbr0",
      type: "bridge",
      isGateway: true,
      ipam: {
        type: "host-local",
        dataDir: join(lab.dir, "plain-ipam"),
        ranges: [[{ subnet: "198.19.4.0/24" }]],
      },
    });
    const trapPod = await lab.addNamespace("trap");
    const plain = await lab.exec(
      n.node.ns,
      [
        "env",
        "CNI_COMMAND=ADD",
        "CNI_CONTAINERID=trap",
        `CNI_NETNS=${netnsPath(trapPod)}`,
        "CNI_IFNAME=eth0",
        `CNI_PATH=${CNI_PATH}`,
        join(CNI_PATH, "bridge"),
      ],
      stdin,
    );
    expect(plain.code).not.toBe(0);
    expect(plain.stdout).toContain("already has an IP address different from");
    // what the failed ADD left behind (a veth pair) goes with the pod
    await lab.exec(trapPod, ["ip", "link", "del", "eth0"]);

    const newPod = await lab.addNamespace("new");
    const r = await n.add("new", netnsPath(newPod));
    expect(r.stderr).toContain("removed a stale address from the bridge");
    expect(r.stderr).toContain("stale=198.19.3.1/24");
    expect(await n.bridgeAddrs()).toEqual(["198.19.4.1/24"]);
    const got = await podAddr(lab, newPod);
    expect(containsIp(parseCidr("198.19.4.0/24")!, parseIp4(got!.ip)!)).toBe(true);
    expect((await ping(lab, newPod, "198.19.4.1", { count: 1 })).received).toBe(1);

    // DEL of the pod from the old subnet still frees its address (its config was stored)
    expect(n.reserved()).toHaveLength(2);
    await n.del("old", netnsPath(oldPod));
    await n.del("new", netnsPath(newPod));
    expect(n.reserved()).toEqual([]);
    expect(filesUnder(n.dataDir)).toEqual([]);
  }, 30_000);
});

describe.skipIf(!isRoot())("with a real agent", () => {
  let lab: Lab;
  afterAll(async () => {
    await lab?.cleanup();
  });

  test("ADD after `tartan agent --backend=alloc` wrote subnet.env: the pod is in the node's lease", async () => {
    await requireCniBinary();
    lab = new Lab("cnia");
    const node = await lab.addNode();
    const n = new CniNode(lab, node);
    const netConf = join(lab.dir, "net-conf.json");
    writeFileSync(netConf, JSON.stringify({ Network: "198.19.0.0/16", Backend: { Type: "alloc" } }));
    const agent = startAgent(lab, {
      node,
      name: "agent",
      registry: `sqlite:${join(lab.dir, "registry.db")}`,
      subnetFile: n.subnetFile,
      extra: [`--net-config-path=${netConf}`],
    });
    await waitReady(lab, node.ns, agent);
    const lease = parseSubnetEnv(readFileSync(n.subnetFile, "utf8")).subnet;
    const pod = await lab.addNamespace("p");
    await n.add("agent-pod", netnsPath(pod));
    const got = await podAddr(lab, pod);
    expect(containsIp(lease, parseIp4(got!.ip)!)).toBe(true);
    await n.del("agent-pod", netnsPath(pod));
    expect(n.reserved()).toEqual([]);
  }, 60_000);
});

// ---- cross-node pod traffic through the plugin: needs a datapath backend --------------

const DATAPATH_BACKENDS = ["ebpf-vxlan", "vxlan"] as const;

for (const backend of DATAPATH_BACKENDS) {
  describe.skipIf(!isRoot())(`cross-node pod traffic through the plugin (${backend})`, () => {
    let lab: Lab;
    afterAll(async () => {
      await lab?.cleanup();
    });

    test("pods added by the plugin on two nodes reach each other", async () => {
      lab = new Lab("cnix");
      const netConf = join(lab.dir, "net-conf.json");
      writeFileSync(netConf, JSON.stringify({ Network: "198.19.0.0/16", Backend: { Type: "vxlan" } }));
      const registry = `sqlite:${join(lab.dir, "registry.db")}`;
      const nodes: CniNode[] = [];
      const agents: LabProcess[] = [];
      const bpffsOf = new Map<number, string>();
      for (let i = 0; i < 2; i++) {
        const node = await lab.addNode();
        const bpffs = `/sys/fs/bpf/tartan-test-${lab.prefix}-n${node.index}`;
        lab.bpffsDirs.push(bpffs);
        bpffsOf.set(node.index, bpffs);
        // the conflist names no pin directory: the agent runs as --node-name=agent<i>, not the
        // host's name, with its own --bpffs, as the DaemonSet does, and the plugin finds its
        // datapath through the file the agent writes next to subnet.env
        const n = new CniNode(lab, node);
        agents.push(
          startAgent(lab, {
            node: n.node,
            name: `agent${i}`,
            backend,
            registry,
            subnetFile: n.subnetFile,
            extra: [`--net-config-path=${netConf}`, `--bpffs=${bpffs}`],
          }),
        );
        nodes.push(n);
      }
      for (const [i, n] of nodes.entries()) await waitReady(lab, n.node.ns, agents[i]!);
      for (const n of nodes)
        await until(async () => {
          const s = await status(lab, n.node.ns);
          return s.leases.length === 2 && s.leases.filter((l) => !l.own).every((l) => l.programmed);
        }, `${n.node.ns} to program the other node`);

      const pods: { ns: string; ip: string }[] = [];
      const endpointIps = async (n: CniNode) => {
        // the pinned endpoint map's keys, as dotted quads
        const out = await lab.must(n.node.ns, [
          "bpftool",
          "-j",
          "map",
          "dump",
          "pinned",
          `${bpffsOf.get(n.node.index)}/maps/tartan_endpoints`,
        ]);
        return (JSON.parse(out) as { key: string[] }[]).map((e) =>
          e.key.map((b) => Number.parseInt(b, 16)).join("."),
        );
      };
      for (const [i, n] of nodes.entries()) {
        const ns = await lab.addNamespace(`x${i}`);
        const add = await n.add(`x${i}`, netnsPath(ns));
        pods.push({ ns, ip: (await podAddr(lab, ns))!.ip });
        // the plugin found the agent's datapath (or, on vxlan, knew there is no endpoint map): no warning
        expect(add.stderr).not.toContain("level=warn");
        // ADD put the pod into the datapath at once, before it sent a single packet: its
        // address in the endpoint map, the send fast path on its veth
        if (backend === "ebpf-vxlan") {
          expect(await endpointIps(n)).toContain(pods[i]!.ip);
          const veth = (add.json.interfaces as { name: string; sandbox?: string }[]).find(
            (x) => !x.sandbox && x.name !== "cni0",
          )!.name;
          // through tcx: no clsact qdisc on the veth (creating one stalls the device)
          expect((await attachments(lab, n.node.ns)).filter((a) => a.startsWith(`${veth} `))).toEqual([
            `${veth} tcx/ingress tartan_encap_pod`,
          ]);
        }
      }
      const r = await ping(lab, pods[0]!.ns, pods[1]!.ip, { count: 3 });
      expect(r.received).toBeGreaterThan(0);
      const back = await ping(lab, pods[1]!.ns, pods[0]!.ip, { count: 3 });
      expect(back.received).toBeGreaterThan(0);
      for (const [i, n] of nodes.entries()) {
        await n.del(`x${i}`, netnsPath(pods[i]!.ns));
        if (backend === "ebpf-vxlan") expect(await endpointIps(n)).not.toContain(pods[i]!.ip);
      }
      for (const n of nodes) expect(n.reserved()).toEqual([]);
    }, 90_000);
  });
}
