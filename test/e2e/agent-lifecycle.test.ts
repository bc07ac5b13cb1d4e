/**
 * The agent's life on a node, with the real binary in namespaces: a reboot (subnet.env
 * gone, the state file kept) takes the same subnet back and traffic flows, on sqlite and
 * on etcd, without ever stealing a subnet another node took meanwhile; a second agent on
 * the same subnet file or bpffs refuses at start, naming the holder; a bad --iface fails
 * at once; a failed start removes what it created but keeps an adopted datapath; systemd
 * hears READY=1 and STOPPING=1; `tartan cleanup` refuses under a running agent.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { formatCidr } from "../../src/config/cidr.ts";
import { parseSubnetEnv } from "../../src/config/subnet-env.ts";
import { attachments } from "../helpers/bpf-attachments.ts";
import { Cluster, type ClusterNode } from "../helpers/cluster.ts";
import { type Lab, type LabProcess, until } from "../helpers/netns.ts";
import { NotifyListener } from "../helpers/notify-socket.ts";
import { ping } from "../helpers/pods.ts";
import { isRoot, requireBinary, startAgent, status, waitReady } from "../helpers/tartan.ts";

const subnetOf = (n: ClusterNode) => formatCidr(parseSubnetEnv(readFileSync(n.subnetFile, "utf8")).subnet);
const keyOf = (cidr: string) => cidr.replace("/", "-");
const stateFile = (cl: Cluster, n: ClusterNode) => join(cl.lab.dir, "state", `agent-${n.index}.lease`);

/** Every pod reaches every pod on the other nodes (3 of 3 pings each way). */
async function podsReachEachOther(cl: Cluster): Promise<void> {
  for (const a of cl.nodes)
    for (const b of cl.nodes) {
      if (a === b) continue;
      const r = await ping(cl.lab, a.pods[0]!.ns, b.pods[0]!.ip);
      expect({ from: a.ns, to: b.pods[0]!.ip, received: r.received }).toEqual({
        from: a.ns,
        to: b.pods[0]!.ip,
        received: 3,
      });
    }
}

/** Waits for a process to exit by itself; its exit code. */
async function exited(lab: Lab, p: LabProcess, what: string, ms = 30_000): Promise<number> {
  await until(() => p.proc.exitCode !== null || p.proc.signalCode !== null, what, ms).catch(async (e) => {
    throw new Error(`${(e as Error).message}\n--- ${p.name} ---\n${await lab.log(p)}`);
  });
  return p.proc.exitCode ?? -1;
}

for (const registry of ["sqlite", "etcd"] as const)
  describe.skipIf(!isRoot())(`reboot: the node keeps its subnet (${registry})`, () => {
    let cl: Cluster;
    beforeAll(async () => {
      const backends = registry === "sqlite" ? ["ebpf-vxlan", "vxlan"] : ["vxlan", "ebpf-vxlan"];
      cl = await Cluster.create({ backends, registry, tag: "rb" });
    }, 120_000);
    afterAll(async () => {
      await cl?.close();
    });

    test("SIGTERM, subnet.env deleted (/run emptied), started again: the same subnet, and pods reach each other", async () => {
      const n = cl.nodes[0]!;
      const before = subnetOf(n);
      expect(readFileSync(stateFile(cl, n), "utf8")).toBe(`${keyOf(before)}\n`);
      expect(await cl.lab.stop(n.agent, "SIGTERM")).toBe(0);
      rmSync(n.subnetFile);
      n.agent = cl.startAgent(n);
      await waitReady(cl.lab, n.ns, n.agent, 8471, 60_000);
      expect(subnetOf(n)).toBe(before);
      expect(await cl.lab.log(n.agent)).toContain("reusing the lease that carries our public IP");
      await cl.waitConverged(30_000);
      await podsReachEachOther(cl);
    }, 120_000);

    test("the state file's subnet, expired and taken by another node meanwhile, is not stolen", async () => {
      const n = cl.nodes[1]!;
      const before = subnetOf(n);
      expect(await cl.lab.stop(n.agent, "SIGTERM")).toBe(0);
      rmSync(n.subnetFile);
      // our lease expired while the node was down, and a flannel node took the subnet
      await cl.deleteLease(keyOf(before));
      const theirs =
        '{"PublicIP":"198.18.0.99","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:11:22:33:44:99"}}';
      await putLease(cl, keyOf(before), theirs);
      n.agent = cl.startAgent(n);
      await waitReady(cl.lab, n.ns, n.agent, 8471, 60_000);
      const after = subnetOf(n);
      expect(after).not.toBe(before);
      expect((await status(cl.lab, n.ns)).lease?.subnet).toBe(after);
      expect(await getLease(cl, keyOf(before))).toBe(theirs);
      expect(readFileSync(stateFile(cl, n), "utf8")).toBe(`${keyOf(after)}\n`);
      await cl.deleteLease(keyOf(before));
    }, 120_000);
  });

/** Writes a lease record as another node would (etcdctl, or the sqlite file). */
async function putLease(cl: Cluster, key: string, value: string): Promise<void> {
  if (cl.etcd) {
    await cl.etcd.etcdctl(["put", `/coreos.com/network/subnets/${key}`, value]);
    return;
  }
  const { SqliteRegistry } = await import("../../src/registry/sqlite.ts");
  const { silentLogger } = await import("../../src/log.ts");
  const reg = SqliteRegistry.open({ path: cl.registry.slice("sqlite:".length), log: silentLogger });
  try {
    expect(await reg.create(key, value, null)).not.toBeNull();
  } finally {
    await reg.close();
  }
}

async function getLease(cl: Cluster, key: string): Promise<string | null> {
  if (cl.etcd)
    return (
      await cl.etcd.etcdctl(["get", "--print-value-only", `/coreos.com/network/subnets/${key}`])
    ).trim();
  const { SqliteRegistry } = await import("../../src/registry/sqlite.ts");
  const { silentLogger } = await import("../../src/log.ts");
  const reg = SqliteRegistry.open({ path: cl.registry.slice("sqlite:".length), log: silentLogger });
  try {
    return (await reg.list()).records.find((r) => r.key === key)?.value ?? null;
  } finally {
    await reg.close();
  }
}

describe.skipIf(!isRoot())("agent start and stop", () => {
  let cl: Cluster;
  beforeAll(async () => {
    cl = await Cluster.create({ backends: ["ebpf-vxlan", "vxlan"], registry: "sqlite", tag: "al" });
  }, 120_000);
  afterAll(async () => {
    await cl?.close();
  });
  const ebpf = () => cl.nodes[0]!;

  test("a second agent on the same --subnet-file refuses at start, naming the file and the agent's PID", async () => {
    const n = ebpf();
    const node = await cl.lab.addNode();
    const second = startAgent(cl.lab, {
      node,
      name: "second-subnet",
      registry: cl.registryFlag,
      backend: "vxlan",
      subnetFile: n.subnetFile,
    });
    expect(await exited(cl.lab, second, "the second agent to stop")).toBe(1);
    const log = await cl.lab.log(second);
    expect(log).toContain(
      `tartan: --subnet-file=${n.subnetFile} is in use by another tartan agent (PID ${n.agent.proc.pid} holds the lock on ${n.subnetFile}.lock)`,
    );
    expect(log.trim().split("\n")).toHaveLength(1);
    expect((await status(cl.lab, n.ns)).health.ok).toBe(true);
  });

  test("a second agent on the same --bpffs refuses at start, naming the directory and the agent's PID", async () => {
    const n = ebpf();
    const node = await cl.lab.addNode();
    const second = startAgent(cl.lab, {
      node,
      name: "second-bpffs",
      registry: cl.registryFlag,
      backend: "ebpf-vxlan",
      subnetFile: join(cl.lab.dir, "second-bpffs", "subnet.env"),
      extra: [`--bpffs=${n.bpffs}`],
    });
    expect(await exited(cl.lab, second, "the second agent to stop")).toBe(1);
    expect(await cl.lab.log(second)).toContain(
      `tartan: --bpffs=${n.bpffs} is in use by another tartan agent (PID ${n.agent.proc.pid} holds the lock on ${n.bpffs})`,
    );
    // it touched nothing: no lease, no devices in its namespace
    expect(await cl.lab.must(node.ns, ["ip", "-o", "link", "show"])).not.toContain("tartan.");
    expect((await status(cl.lab, n.ns)).leases).toHaveLength(cl.nodes.length);
    await podsReachEachOther(cl);
  });

  test("--iface=doesnotexist fails at once with a clear line, even with no network config anywhere", async () => {
    const node = await cl.lab.addNode();
    const empty = `sqlite:${join(cl.lab.dir, "empty-registry.db")}`;
    const p = cl.lab.spawn(node.ns, "bad-iface", [
      requireBinary(),
      "agent",
      `--registry=${empty}`,
      "--iface=doesnotexist",
      "--node-name=bad-iface",
      `--subnet-file=${join(cl.lab.dir, "bad-iface", "subnet.env")}`,
      `--state-dir=${join(cl.lab.dir, "state")}`,
    ]);
    expect(await exited(cl.lab, p, "the agent with a bad --iface to stop")).toBe(1);
    const log = await cl.lab.log(p);
    expect(log).toMatch(
      /^tartan: --iface=doesnotexist: no such interface or address here \(have: .*eth0.*\)$/m,
    );
    expect(log).not.toContain("waiting");
  });

  test("a fresh start that fails after attaching its datapath leaves nothing behind", async () => {
    const node = await cl.lab.addNode();
    const bpffs = `/sys/fs/bpf/tartan-test-${cl.lab.prefix}-failed`;
    cl.lab.bpffsDirs.push(bpffs);
    const linksBefore = await cl.lab.must(node.ns, ["ip", "-o", "link", "show"]);
    // node 1's PublicIP: its lease is found after prepare() attached everything, and refused
    const p = startAgent(cl.lab, {
      node,
      name: "failed-start",
      registry: cl.registryFlag,
      backend: "ebpf-vxlan",
      subnetFile: join(cl.lab.dir, "failed-start", "subnet.env"),
      extra: [`--bpffs=${bpffs}`, `--public-ip=${cl.nodes[1]!.ip}`],
    });
    expect(await exited(cl.lab, p, "the refused agent to stop")).toBe(1);
    const log = await cl.lab.log(p);
    expect(log).toContain("datapath attached");
    expect(log).toContain(`carries our public IP ${cl.nodes[1]!.ip}`);
    expect(await cl.lab.must(node.ns, ["ip", "-o", "link", "show"])).toBe(linksBefore);
    // no program on any hook (tcx, clsact, XDP) of any link
    expect(await attachments(cl.lab, node.ns)).toEqual([]);
    expect(existsSync(bpffs)).toBe(false);
  }, 60_000);

  test("a restart that fails keeps the adopted datapath: pods keep reaching each other", async () => {
    const n = ebpf();
    const key = keyOf(subnetOf(n));
    expect(await cl.lab.stop(n.agent, "SIGTERM")).toBe(0);
    // the node's memory wiped: its own lease now looks like another node's with its PublicIP
    rmSync(n.subnetFile);
    rmSync(stateFile(cl, n));
    const failed = cl.startAgent(n, `agent-${n.index}`);
    expect(await exited(cl.lab, failed, "the refused restart to stop")).toBe(1);
    expect(await cl.lab.log(failed)).toContain("adopted the pinned datapath of a previous run");
    expect(await cl.lab.must(n.ns, ["ip", "-o", "link", "show"])).toContain("tartan.1");
    expect(existsSync(n.bpffs)).toBe(true);
    await podsReachEachOther(cl);
    // the memory back: the next start takes its lease again
    writeFileSync(stateFile(cl, n), `${key}\n`);
    n.agent = cl.startAgent(n);
    await waitReady(cl.lab, n.ns, n.agent, 8471, 60_000);
    expect(keyOf(subnetOf(n))).toBe(key);
    await cl.waitConverged(30_000);
  }, 120_000);

  test("with NOTIFY_SOCKET: READY=1 once subnet.env is written and the datapath programmed; STOPPING=1 on SIGTERM", async () => {
    const n = cl.nodes[1]!;
    const socket = join(cl.lab.dir, "notify.sock");
    const listener = new NotifyListener(socket);
    try {
      expect(await cl.lab.stop(n.agent, "SIGTERM")).toBe(0);
      rmSync(n.subnetFile);
      let envAtReady = null as string | null;
      n.agent = startAgent(cl.lab, {
        node: n,
        name: `agent-${n.index}`,
        registry: cl.registryFlag,
        backend: n.backend,
        subnetFile: n.subnetFile,
        extra: [`--bpffs=${n.bpffs}`],
        env: { NOTIFY_SOCKET: socket },
      });
      await until(
        () => {
          const got = listener.drain();
          if (got.length > 0 && envAtReady === null)
            envAtReady = existsSync(n.subnetFile) ? readFileSync(n.subnetFile, "utf8") : "";
          return got.length > 0;
        },
        "READY=1",
        60_000,
      );
      expect(listener.messages).toEqual([`READY=1\nSTATUS=holding ${subnetOf(n)}`]);
      expect(envAtReady).toContain(`FLANNEL_SUBNET=`);
      const s = await status(cl.lab, n.ns);
      expect(s.ready).toEqual({ ok: true, reasons: [] });
      expect(await cl.lab.stop(n.agent, "SIGTERM")).toBe(0);
      expect(listener.drain()).toEqual([`READY=1\nSTATUS=holding ${subnetOf(n)}`, "STOPPING=1"]);
    } finally {
      listener.close();
    }
    n.agent = cl.startAgent(n);
    await waitReady(cl.lab, n.ns, n.agent, 8471, 60_000);
  }, 120_000);

  test("`tartan cleanup` under a running agent refuses, naming it; --force says what it does and goes ahead", async () => {
    const n = ebpf();
    // everything cleanup may remove points into the lab (never the host's CNI files), and
    // a bridge that does not exist (the pods stay)
    const lab = (p: string) => join(cl.lab.dir, "cleanup", p);
    const args = [
      "cleanup",
      `--subnet-file=${n.subnetFile}`,
      `--bpffs=${n.bpffs}`,
      `--cni-data-dir=${lab("flannel")}`,
      `--cni-ipam-dir=${lab("networks")}`,
      `--cni-conf-file=${lab("10-tartan.conflist")}`,
      `--cni-bin=${lab("tartan")}`,
      `--docker-env=${lab("docker_opts.env")}`,
      "--bridge=nobr0",
    ];
    const refused = await cl.lab.exec(n.ns, [requireBinary(), ...args]);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe("");
    expect(refused.stderr).toBe(
      `tartan: an agent is running on this node (PID ${n.agent.proc.pid} holds ${n.subnetFile}.lock); stop it first (systemctl stop tartan), or pass --force\n`,
    );
    expect(await cl.lab.must(n.ns, ["ip", "-o", "link", "show"])).toContain("tartan.1");
    const forced = await cl.lab.exec(n.ns, [requireBinary(), ...args, "--force"]);
    expect(forced.stdout.split("\n")[0]).toBe(
      `--force: an agent is running (PID ${n.agent.proc.pid} holds ${n.subnetFile}.lock); removing its datapath under it`,
    );
    expect(forced.stdout).toContain(`removed eBPF programs, overlay device, pins under ${n.bpffs}`);
    // the agent notices and rebuilds its datapath
    await until(
      async () => (await status(cl.lab, n.ns)).metrics.repairs >= 1,
      "the agent to rebuild",
      30_000,
    );
    await waitReady(cl.lab, n.ns, n.agent, 8471, 30_000);
  }, 120_000);
});
