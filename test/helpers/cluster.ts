/**
 * A Tartan cluster in a box: N node namespaces on one underlay, a registry (sqlite file,
 * or a real etcd of one or more members, each in its own namespace), one real
 * `dist/tartan agent` per node with the backend asked for, pods on each node's cni0, and
 * an "external" host outside the cluster network. With `ipv6` the network is dual stack
 * (flannel's EnableIPv6): nodes get fd00:18::<n> on the underlay too, pods an address of
 * fd00:19::/56. Everything is removed by `close()`; agent logs are attached to errors.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Lab, type LabProcess, until } from "./netns.ts";
import { addPod, addPodViaBridgePlugin, addPodViaCni, type Pod } from "./pods.ts";
import { requireBinary, startAgent, status, tartan, waitReady } from "./tartan.ts";

export interface ClusterNode {
  readonly ns: string;
  readonly ip: string;
  /** The node's IPv6 underlay address (dual-stack clusters). */
  readonly ip6?: string;
  readonly index: number;
  readonly backend: string;
  readonly subnetFile: string;
  readonly bpffs: string;
  agent: LabProcess;
  readonly pods: Pod[];
}

export interface ClusterOptions {
  /** One backend per node. */
  readonly backends: readonly string[];
  readonly registry?: "sqlite" | "etcd";
  /** etcd members (each in its own namespace, 198.18.254.<i>); agents get every endpoint. Default 1. */
  readonly etcdMembers?: number;
  readonly ipMasq?: boolean;
  readonly podsPerNode?: number;
  /** Extra agent flags for every node. */
  readonly agentFlags?: readonly string[];
  readonly tag?: string;
  /**
   * How pods are made: through `tartan cni`, which delegates to the real bridge/host-local
   * plugins (default), with plain ip commands, or by the real `bridge` plugin called
   * directly with flannel's delegate config (no Tartan code told).
   */
  readonly pods?: "cni" | "manual" | "bridge";
  /** Delegate-config keys for "cni" and "bridge" pods (e.g. `{ ipMasq: false }`). */
  readonly podDelegate?: Readonly<Record<string, unknown>>;
  /** Dual stack: EnableIPv6 with IPv6Network fd00:19::/56, every node with an IPv6 underlay address. */
  readonly ipv6?: boolean;
}

export const EXTERNAL_IP = "198.18.255.1";
/** The external host's IPv6 address (dual-stack clusters). */
export const EXTERNAL_IP6 = "fd00:18::ff:1";
/** The dual-stack clusters' pod network. */
export const IPV6_NETWORK = "fd00:19::/56";

export class Cluster {
  readonly lab: Lab;
  readonly nodes: ClusterNode[] = [];
  registry = "";
  /** --etcd-endpoints=… or --registry=sqlite:… */
  registryFlag = "";
  externalNs = "";
  #etcd: import("./etcd.ts").TestEtcd | null = null;
  #etcdCluster: import("./etcd.ts").TestEtcdCluster | null = null;
  /** The real etcd, when the cluster runs on one member. */
  get etcd(): import("./etcd.ts").TestEtcd | null {
    return this.#etcd;
  }
  /** The etcd cluster, when the cluster runs on several members. */
  get etcdCluster(): import("./etcd.ts").TestEtcdCluster | null {
    return this.#etcdCluster;
  }
  readonly #o: ClusterOptions;

  private constructor(o: ClusterOptions) {
    this.#o = o;
    this.lab = new Lab(o.tag ?? "cl");
  }

  static async create(o: ClusterOptions): Promise<Cluster> {
    const c = new Cluster(o);
    try {
      await c.#init();
    } catch (e) {
      const logs = await c.logs();
      await c.close();
      throw new Error(`${(e as Error).message}\n${logs}`);
    }
    return c;
  }

  async #init(): Promise<void> {
    const lab = this.lab;
    // the external host: on the underlay, outside the cluster network
    this.externalNs = await lab.addHost("ext", EXTERNAL_IP, 1500, this.#o.ipv6 ? EXTERNAL_IP6 : undefined);

    const netConf = join(lab.dir, "net-conf.json");
    const wire = this.#o.backends[0] === "host-gw" ? "host-gw" : "vxlan";
    const v6 = this.#o.ipv6 ? { EnableIPv6: true, IPv6Network: IPV6_NETWORK } : {};
    writeFileSync(netConf, JSON.stringify({ Network: "198.19.0.0/16", ...v6, Backend: { Type: wire } }));
    if ((this.#o.registry ?? "sqlite") === "etcd") {
      const { startEtcd, startEtcdCluster } = await import("./etcd.ts");
      const n = this.#o.etcdMembers ?? 1;
      const specs = [];
      for (let i = 1; i <= n; i++) {
        const host = `198.18.254.${i}`;
        specs.push({ netns: await lab.addHost(n === 1 ? "etcd" : `etcd${i}`, host), host });
      }
      // cluster-wide etcdctl from the external host: a member cut off by a test does not cut it off
      const etcd =
        n === 1 ? await startEtcd(specs[0]!) : await startEtcdCluster(specs, { ctlNetns: this.externalNs });
      if (n === 1) this.#etcd = etcd as import("./etcd.ts").TestEtcd;
      else this.#etcdCluster = etcd as import("./etcd.ts").TestEtcdCluster;
      this.registry = etcd.endpoint;
      this.registryFlag = `--etcd-endpoints=${etcd.endpoint}`;
      await etcd.etcdctl(["put", "/coreos.com/network/config"], { stdin: readFileSync(netConf, "utf8") });
    } else {
      this.registry = `sqlite:${join(lab.dir, "registry.db")}`;
      this.registryFlag = `--registry=${this.registry}`;
      const r = await tartan(["config", "set", netConf, this.registryFlag]);
      if (r.code !== 0) throw new Error(`tartan config set: ${r.stderr}`);
    }
    for (const b of this.#o.backends) await this.addNode(b, { pods: false });
    for (const n of this.nodes) await waitReady(lab, n.ns, n.agent, 8471, 30_000);
    for (const n of this.nodes) await this.#addPods(n);
    await this.waitConverged();
  }

  async #addPods(n: ClusterNode): Promise<void> {
    for (let i = 0; i < (this.#o.podsPerNode ?? 1); i++) n.pods.push(await this.addPod(n, 2 + i));
  }

  /** A pod on node `n`, made the cluster's way (`at`: its host offset for plain ip pods). */
  addPod(n: ClusterNode, at = 2 + n.pods.length): Promise<Pod> {
    const delegate = this.#o.podDelegate ?? {};
    switch (this.#o.pods ?? "cni") {
      case "manual":
        return addPod(this.lab, n, n.subnetFile, at);
      case "cni":
        return addPodViaCni(this.lab, n, n.subnetFile, { binary: requireBinary(), delegate });
      case "bridge":
        return addPodViaBridgePlugin(this.lab, n, n.subnetFile, { delegate });
    }
  }

  startAgent(n: ClusterNode, name = `agent-${n.index}`): LabProcess {
    return startAgent(this.lab, {
      node: n,
      name,
      registry: this.registryFlag,
      backend: n.backend,
      subnetFile: n.subnetFile,
      extra: [`--bpffs=${n.bpffs}`, ...(this.#o.ipMasq ? ["--ip-masq"] : []), ...(this.#o.agentFlags ?? [])],
    });
  }

  /** Adds a node (and, by default, its pods) to the running cluster. */
  async addNode(backend: string, opts: { pods?: boolean } = {}): Promise<ClusterNode> {
    const base = await this.lab.addNode({ ipv6: this.#o.ipv6 === true });
    const bpffs = `/sys/fs/bpf/tartan-test-${this.lab.prefix}-n${base.index}`;
    this.lab.bpffsDirs.push(bpffs);
    const node: ClusterNode = {
      ...base,
      backend,
      subnetFile: join(this.lab.dir, `n${base.index}`, "subnet.env"),
      bpffs,
      agent: null as unknown as LabProcess,
      pods: [],
    };
    node.agent = this.startAgent(node);
    this.nodes.push(node);
    if (opts.pods !== false) {
      await waitReady(this.lab, node.ns, node.agent, 8471, 30_000);
      await this.#addPods(node);
    }
    return node;
  }

  /** Every running agent knows and has programmed every other node's lease. */
  async waitConverged(ms = 20_000): Promise<void> {
    const live = this.nodes.filter((n) => n.agent.proc.exitCode === null);
    for (const n of live)
      await until(
        async () => {
          const s = await status(this.lab, n.ns);
          const remote = s.leases.filter((l) => !l.own);
          return s.leases.length === live.length && remote.every((l) => l.programmed) && s.ready.ok;
        },
        `${n.ns} to see and program ${live.length} leases`,
        ms,
      ).catch(async (e) => {
        throw new Error(`${(e as Error).message}\n${await this.logs()}`);
      });
  }

  /** Deletes a lease record by hand, as an operator would (sqlite file or etcdctl). */
  async deleteLease(key: string): Promise<void> {
    const etcd = this.#etcd ?? this.#etcdCluster;
    if (etcd) {
      await etcd.etcdctl(["del", `/coreos.com/network/subnets/${key}`]);
      return;
    }
    const { SqliteRegistry } = await import("../../src/registry/sqlite.ts");
    const { silentLogger } = await import("../../src/log.ts");
    const reg = SqliteRegistry.open({ path: this.registry.slice("sqlite:".length), log: silentLogger });
    try {
      if (!(await reg.delete(key))) throw new Error(`no lease ${key} to delete`);
    } finally {
      await reg.close();
    }
  }

  async logs(): Promise<string> {
    let out = "";
    for (const p of this.lab.processes) out += `--- ${p.name} ---\n${(await this.lab.log(p)).slice(-4000)}\n`;
    return out;
  }

  async close(): Promise<void> {
    for (const p of this.lab.processes) await this.lab.stop(p, "SIGKILL");
    await this.#etcd?.close();
    await this.#etcdCluster?.close();
    await this.lab.cleanup();
  }
}
