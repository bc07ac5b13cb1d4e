/**
 * The node agent's state and its start sequence: wait for the network config, prepare
 * the backend, take our lease, write subnet.env, set our subnet in the datapath, then
 * follow every lease. It also answers "what is your status" (snapshot.ts words it) and
 * stops: leaving the datapath in place, or — when the start failed — removing what this
 * start created.
 */
import type { Backend, BackendAnnouncement, BackendHealth, ExternalInterface } from "../backend/backend.ts";
import { publishDatapath } from "../backend/datapath-file.ts";
import { createBackend } from "../backend/index.ts";
import { ensurePinDir } from "../bpf/pin.ts";
import { formatCidr } from "../config/cidr.ts";
import { formatCidr6 } from "../config/cidr6.ts";
import type { BackendName, NetworkConfig } from "../config/network.ts";
import type { AgentOptions } from "../config/options.ts";
import { type SubnetEnv, writeSubnetEnv } from "../config/subnet-env.ts";
import type { RegistryFacts } from "../doctor/facts.ts";
import type { Lease } from "../lease/lease.ts";
import { nodeMemory, readStateFile } from "../lease/memory.ts";
import { type LeaseSource, NetworkConfigError, SourceWaitingError } from "../lease/source.ts";
import { errorText, type Logger } from "../log.ts";
import { type AgentStatus, newMetrics } from "../status/status.ts";
import { COMMIT, VERSION } from "../version.ts";
import { MasqKeeper } from "./ip-masq.ts";
import { LeaseKeeper, WAIT_MAX_MS, WAIT_MIN_MS } from "./lease-keeper.ts";
import { LeaseSync } from "./lease-sync.ts";
import { type HeldLock, takeLock } from "./lock.ts";
import { type AgentPhase, agentStatus, leaseViewsSliced, type StatusFacts } from "./snapshot.ts";
import { SourceHealth } from "./source-health.ts";
import { StoppableSleep } from "./stoppable-sleep.ts";

/** How long one datapath health answer serves status requests. */
const HEALTH_TTL_MS = 1000;

/** One datapath health check, shared by the status requests that come while it runs and, when ok, for HEALTH_TTL_MS after. */
interface HealthAnswer {
  readonly backend: Backend;
  /** When the answer came (performance.now()); null while it is being asked. */
  settledAt: number | null;
  readonly value: Promise<BackendHealth>;
}

export interface AgentDeps {
  readonly o: AgentOptions;
  readonly source: LeaseSource;
  /** The underlay interface, resolved before anything waits. */
  readonly extIface: ExternalInterface;
  /** subnet.env as found at start (null when absent). */
  readonly previousEnv: SubnetEnv | null;
  /** `<state-dir>/<node>.lease`. */
  readonly stateFile: string;
  readonly log: Logger;
}

export class Agent {
  readonly metrics = newMetrics();
  readonly started = new Date();
  readonly health: SourceHealth;
  phase: AgentPhase = "starting";
  stopping = false;
  config: NetworkConfig | null = null;
  backend: Backend | null = null;
  announced: BackendAnnouncement | null = null;
  keeper: LeaseKeeper | null = null;
  sync: LeaseSync | null = null;
  #masq: MasqKeeper | null = null;
  #subnetWritten = false;
  #localSet = false;
  #bpffsLock: HeldLock | null = null;
  #health: HealthAnswer | null = null;
  #lastBeat = Date.now();
  readonly #beat = setInterval(() => {
    this.#lastBeat = Date.now();
  }, 1000);
  readonly #sleep = new StoppableSleep();
  readonly #d: AgentDeps;

  constructor(d: AgentDeps) {
    this.#d = d;
    this.health = new SourceHealth(d.source.description, d.log, this.metrics);
  }

  /** Where leases come from (a registry, or the Kubernetes API). */
  get source(): LeaseSource {
    return this.#d.source;
  }

  get backendName(): BackendName | null {
    return this.backend?.name ?? this.#d.o.backend ?? this.config?.backend.type ?? null;
  }

  /** Runs the start sequence; resolves with our lease once the datapath follows every lease. */
  async start(): Promise<Lease> {
    const { o, log } = this.#d;
    const config = await this.#waitForConfig();
    this.config = config;
    const c6 = config.ipv6 ?? null;
    log.info("network config loaded", {
      network: formatCidr(config.network),
      subnetLen: config.subnetLen,
      ...(c6 ? { ipv6Network: formatCidr6(c6.network), ipv6SubnetLen: c6.subnetLen } : {}),
      backend: o.backend ?? config.backend.type,
      vni: config.backend.vni,
      port: config.backend.port,
    });
    for (const w of config.warnings) log.warn(`network config: ${w}`);
    const publicIpv6 = this.#d.extIface.publicIpv6 ?? null;
    if (c6 && publicIpv6 === null)
      throw new Error(
        `the network config is dual stack (EnableIPv6) but the underlay ${this.#d.extIface.name} has no global IPv6 address; give it one, or name this node's IPv6 address with --public-ipv6`,
      );
    const backend = await this.#createBackend(config);
    const ann = await backend.prepare();
    // the CNI plugin finds the datapath (its pins) through this file, whatever the node is called
    publishDatapath(o.subnetFile, { backend: backend.name, node: o.nodeName, bpffs: o.bpffs });
    this.announced = ann;
    const keeper = new LeaseKeeper({
      source: this.#d.source,
      config,
      attrs: c6
        ? {
            publicIp: this.#d.extIface.publicIp,
            publicIpv6,
            backendType: ann.backendType,
            vxlan: ann.vxlan,
            vxlan6: ann.vxlan6 ?? null,
          }
        : { publicIp: this.#d.extIface.publicIp, backendType: ann.backendType, vxlan: ann.vxlan },
      ttlMs: o.leaseTtlMs,
      renewMarginMs: o.renewMarginMs,
      memory: nodeMemory(
        this.#d.previousEnv,
        readStateFile(this.#d.stateFile),
        config.network,
        c6?.network ?? null,
      ),
      stateFile: this.#d.stateFile,
      log,
      metrics: this.metrics,
      health: this.health,
      onLease: (l) =>
        void this.#useLease(l)
          .then(() => this.sync?.reconcile())
          .catch((e) => log.error("applying the re-acquired lease failed", { error: errorText(e) })),
    });
    this.keeper = keeper;
    this.phase = "acquiring";
    const lease = await keeper.acquire();
    this.sync = new LeaseSync({
      source: this.#d.source,
      config,
      backend,
      log,
      metrics: this.metrics,
      health: this.health,
      ownLease: () => keeper.lease,
      ownKey: () => keeper.key,
      onOwnLeaseGone: () => {
        log.warn("our lease was removed from the registry; re-acquiring", { subnet: keeper.lease?.key });
        void keeper.lost();
      },
    });
    await this.#useLease(lease);
    await this.sync.start();
    if (this.stopping) throw new Error("stopped");
    this.phase = "running";
    return lease;
  }

  /** The network config from the source, waiting (and retrying errors) until there is one. */
  async #waitForConfig(): Promise<NetworkConfig> {
    const { source, log } = this.#d;
    let waitedLog = 0;
    let backoff = 500;
    let wait = WAIT_MIN_MS;
    while (!this.#sleep.stopped) {
      let config: NetworkConfig | null;
      try {
        config = await source.networkConfig();
      } catch (e) {
        if (e instanceof NetworkConfigError) throw e;
        if (e instanceof SourceWaitingError) {
          this.health.waiting(e.message);
          await this.#sleep.sleep(wait);
          wait = Math.min(wait * 2, WAIT_MAX_MS);
          continue;
        }
        this.health.failed(e);
        log.warn("cannot read the network config, retrying", {
          registry: source.description,
          error: errorText(e),
        });
        await this.#sleep.sleep(backoff);
        backoff = Math.min(backoff * 2, 10_000);
        continue;
      }
      this.health.ok();
      this.health.waited();
      if (config) return config;
      if (Date.now() - waitedLog > 30_000) {
        waitedLog = Date.now();
        log.warn("no network config in the registry yet; waiting (set one with: tartan config set FILE)", {
          registry: source.description,
        });
      }
      await this.#sleep.sleep(1000);
    }
    throw new Error("stopped");
  }

  async #createBackend(config: NetworkConfig): Promise<Backend> {
    const { o, log } = this.#d;
    const name = o.backend ?? config.backend.type;
    if (name === "ebpf-vxlan") {
      // the pin directory is this agent's alone: a second agent on it would rewrite our maps
      await ensurePinDir(o.bpffs, log);
      this.#bpffsLock = takeLock(o.bpffs, `--bpffs=${o.bpffs}`);
    }
    this.backend = await createBackend(name, {
      log: log.with({ backend: name }),
      nodeName: o.nodeName,
      config,
      extIface: this.#d.extIface,
      bpffs: o.bpffs,
      decap: o.decap,
    });
    return this.backend;
  }

  /** Our lease is known (first, or re-acquired): subnet.env, the datapath's local subnet, ip-masq. */
  async #useLease(lease: Lease): Promise<void> {
    const { o, log } = this.#d;
    const config = this.config!;
    const ann = this.announced!;
    const c6 = config.ipv6 ?? null;
    const sn6 = c6 ? (lease.subnet6 ?? null) : null;
    if (c6 && sn6 === null)
      throw new Error(`lease ${lease.key} has no IPv6 subnet, but the network config is dual stack`);
    writeSubnetEnv(o.subnetFile, {
      network: config.network,
      subnet: lease.subnet,
      ...(c6 && sn6 ? { network6: c6.network, subnet6: sn6 } : {}),
      mtu: ann.mtu,
      ipMasq: o.ipMasq,
    });
    this.#subnetWritten = true;
    log.info("wrote subnet file", {
      path: o.subnetFile,
      subnet: formatCidr(lease.subnet),
      ...(sn6 ? { ipv6Subnet: formatCidr6(sn6) } : {}),
      mtu: ann.mtu,
    });
    await this.backend!.setLocal(lease);
    if (o.ipMasq) {
      this.#masq ??= new MasqKeeper(config.network, log, c6?.network ?? null);
      await this.#masq.set(lease.subnet, sn6);
    }
    this.#localSet = true;
  }

  /**
   * The datapath's verdict, asked at most once per HEALTH_TTL_MS however many requests want
   * it (a kernel backend's check runs `ip`): probes and scrapes share one answer.
   */
  #datapathHealth(): Promise<BackendHealth | null> {
    const b = this.backend;
    if (!b) return Promise.resolve(null);
    const c = this.#health;
    // only a healthy answer is reused: a broken datapath (or one still being set up) is asked again
    if (c?.backend === b && (c.settledAt === null || performance.now() - c.settledAt < HEALTH_TTL_MS))
      return c.value;
    const entry: HealthAnswer = {
      backend: b,
      settledAt: null,
      value: b.health().catch((e): BackendHealth => ({ ok: false, reason: errorText(e) })),
    };
    void entry.value.then((h) => {
      if (h.ok) entry.settledAt = performance.now();
      else if (this.#health === entry) this.#health = null;
    });
    this.#health = entry;
    return entry.value;
  }

  /**
   * The status snapshot. `leases: false` leaves the per-lease list out (a probe, a scrape:
   * no work per lease); `counters: false` skips reading the datapath counters (probes).
   */
  async status(opts: { leases?: boolean; counters?: boolean } = {}): Promise<AgentStatus> {
    const b = this.backend;
    const datapath = await this.#datapathHealth();
    const counters = b && opts.counters !== false ? await b.counters().catch(() => ({})) : {};
    const facts: StatusFacts = {
      node: this.#d.o.nodeName,
      version: `${VERSION} (${COMMIT})`,
      backend: this.backendName,
      startedAt: this.started,
      phase: this.phase,
      stopping: this.stopping,
      stalledMs: Date.now() - this.#lastBeat,
      config: this.config,
      source: {
        description: this.health.description,
        state: this.health.state,
        lastError: this.health.lastError,
        waiting: this.health.waitingFor,
        skipped: this.#d.source.skippedByReason?.() ?? null,
      },
      revision: this.sync?.revision ?? 0,
      own: this.keeper?.lease ?? null,
      renewAt: this.keeper?.renewAt ?? null,
      subnetFile: this.#d.o.subnetFile,
      subnetWritten: this.#subnetWritten,
      localSet: this.#localSet,
      leases: this.sync?.leases ?? null,
      programmed: this.sync?.programmed ?? null,
      programmedCount: this.sync?.programmedCount,
      synced: this.sync?.synced ?? false,
      datapath,
      counters,
      metrics: this.metrics,
    };
    const summary = agentStatus(facts, false);
    return opts.leases === false ? summary : { ...summary, leases: await leaseViewsSliced(facts) };
  }

  /** The registry as this agent follows it, for the doctor (no second client, no re-list). */
  registryView(): RegistryFacts {
    const sync = this.sync;
    if (!sync) throw new Error("the agent has not listed the registry yet");
    return {
      description: this.health.description,
      leases: [...sync.leases.values()],
      invalid: sync.invalidRecords(),
    };
  }

  /**
   * Stops every loop and releases handles. The datapath stays in place, so traffic keeps
   * flowing — unless `failedStart`: then what this start created is removed (an adopted
   * datapath is kept).
   */
  async stop(failedStart: boolean): Promise<void> {
    const log = this.#d.log;
    this.stopping = true;
    if (failedStart) this.phase = "failed";
    this.#sleep.stop();
    this.keeper?.stop();
    this.sync?.stop();
    this.#masq?.stop();
    clearInterval(this.#beat);
    const b = this.backend;
    if (b && failedStart)
      await b.abandon().catch((e) => log.warn("undoing the failed start failed", { error: errorText(e) }));
    else await b?.close().catch((e) => log.warn("backend close failed", { error: errorText(e) }));
    await this.#d.source.close().catch(() => {});
    this.#bpffsLock?.release();
  }
}
