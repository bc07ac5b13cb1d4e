/**
 * The I/O half of `tartan doctor`: asks the running agent, the registry, the kernel
 * (`ip -json`, /proc/sys, `bridge`, `nft -j`, `ethtool -k`; the eBPF datapath's pinned
 * maps through the ABI's codecs and its attach points through libbpf), the CNI config
 * directory and the peers (ping through the overlay), and returns plain `Facts`. The
 * node's own reads are in gather-node.ts. Each
 * read that fails becomes a fact carrying the reason; gathering itself never throws for
 * a broken node.
 */
import { existsSync, readFileSync } from "node:fs";
import { backendFacts } from "../backend/facts.ts";
import { cidrToKey, formatIp4, parseCidr, parseIp4 } from "../config/cidr.ts";
import { formatIp6 } from "../config/cidr6.ts";
import { type NetworkConfig, parseNetworkConfig } from "../config/network.ts";
import { DEFAULT_KUBE_NET_CONF } from "../config/options.ts";
import { readSubnetEnv } from "../config/subnet-env.ts";
import type { KubeSourceView } from "../lease/kube-source.ts";
import { decodeLeaseRecord, type Lease } from "../lease/lease.ts";
import { errorText, silentLogger } from "../log.ts";
import { findInterface } from "../net/iface.ts";
import { openRegistry } from "../registry/index.ts";
import type { AgentStatus } from "../status/status.ts";
import { attempt, withTimeout } from "./attempt.ts";
import { derive } from "./checks.ts";
import {
  type AgentFacts,
  type Fact,
  type Facts,
  fact,
  factError,
  type RegistryFacts,
  type UnderlayFacts,
} from "./facts.ts";
import {
  gatherDatapath,
  gatherIpv6,
  inBatches,
  ipJson,
  PROBES_AT_ONCE,
  probePeer,
  readCni,
  readLinks,
  run,
} from "./gather-node.ts";
import { type DoctorInput, type Resolved, resolveSettings } from "./settings.ts";

export interface GatherOptions {
  readonly input: DoctorInput;
  /** Ping every peer through the datapath (default true). */
  readonly probe: boolean;
  /** Seconds each probe waits for an answer. */
  readonly probeTimeoutS: number;
  /** The agent's own view, when doctor runs inside the agent (no HTTP round trip to itself). */
  readonly agent?: () => Promise<AgentFacts>;
  /**
   * Inside the agent: its own view of the registry (the leases it follows, the records it
   * skipped), instead of a second registry client listing every lease again each run.
   */
  readonly registry?: () => RegistryFacts;
  /**
   * Probe at most `max` peers this run: a window that moves by `max` with each `round`, so
   * a large cluster is covered over successive runs (the agent's background doctor).
   */
  readonly probeSample?: { readonly max: number; readonly round: number };
  /** The agent's kube source, when doctor runs inside a --kube-subnet-mgr agent (no second Node list). */
  readonly kubeView?: () => KubeSourceView | null;
}

/** The running agent's /v1/status and /v1/config. */
export async function askAgent(http: string): Promise<AgentFacts> {
  const base = `http://${http}`;
  const get = async (path: string) => {
    const r = await fetch(`${base}${path}`, { signal: AbortSignal.timeout(3000) });
    if (!r.ok) throw new Error(`GET ${path} answered ${r.status}`);
    return r.json();
  };
  const [status, config] = await Promise.all([get("/v1/status"), get("/v1/config")]);
  const c = config as { options?: Record<string, unknown>; network?: unknown };
  return { status: status as AgentStatus, options: c.options ?? {}, network: c.network ?? null };
}

function agentNetwork(a: Fact<AgentFacts>): string | null {
  return a.ok && a.value.network ? JSON.stringify(a.value.network) : null;
}

async function readRegistry(
  r: ReturnType<typeof resolveSettings>,
  agent: Fact<AgentFacts>,
): Promise<{ registry: Fact<RegistryFacts>; config: Fact<NetworkConfig> }> {
  const reg = r.registry;
  if (reg.kind === "sqlite" && !existsSync(reg.path)) {
    const err = `sqlite:${reg.path}: no registry file there`;
    return { registry: factError(err), config: configFrom(r.netConfigPath, null, agent, err) };
  }
  try {
    const registry = await withTimeout(
      openRegistry(reg, silentLogger, { create: false }),
      5000,
      "opening the registry",
    );
    try {
      const raw = await withTimeout(registry.getConfig(), 5000, "reading the network config");
      const { records } = await withTimeout(registry.list(), 5000, "listing leases");
      const config = configFrom(r.netConfigPath, raw, agent, "no network config in the registry");
      const leases: Lease[] = [];
      const invalid: { key: string; reason: string }[] = [];
      if (config.ok)
        for (const rec of records) {
          const d = decodeLeaseRecord(rec, config.value);
          if (d.ok) leases.push(d.lease);
          else invalid.push({ key: rec.key, reason: d.reason });
        }
      return { registry: fact({ description: registry.description, leases, invalid }), config };
    } finally {
      await registry.close().catch(() => {});
    }
  } catch (e) {
    return {
      registry: factError(errorText(e)),
      config: configFrom(r.netConfigPath, null, agent, errorText(e)),
    };
  }
}

/** The registry as the agent follows it (doctor inside the agent), with the agent's network config. */
async function agentRegistry(
  r: ReturnType<typeof resolveSettings>,
  agent: Fact<AgentFacts>,
  view: () => RegistryFacts,
): Promise<{ registry: Fact<RegistryFacts>; config: Fact<NetworkConfig> }> {
  const source = agent.ok ? agent.value.status.registry : null;
  const down =
    source && source.state !== "ok"
      ? factError<RegistryFacts>(
          `${source.description}: ${source.lastError ?? "not reached yet"} (the agent keeps its last view)`,
        )
      : null;
  return {
    registry: down ?? (await attempt(view)),
    config: configFrom(r.netConfigPath, null, agent, "the agent has no network config yet"),
  };
}

async function readKubeFacts(r: Resolved, view: GatherOptions["kubeView"]) {
  const { readKube } = await import("./gather-kube.ts");
  return readKube({
    kube: r.kube!,
    nodeName: r.settings.nodeName,
    netConfigPath: r.netConfigPath ?? DEFAULT_KUBE_NET_CONF,
    view,
  });
}

function configFrom(
  path: string | null,
  raw: string | null,
  agent: Fact<AgentFacts>,
  why: string,
): Fact<NetworkConfig> {
  try {
    if (path) return fact(parseNetworkConfig(readFileSync(path, "utf8")));
    if (raw !== null) return fact(parseNetworkConfig(raw));
    const fromAgent = agentNetwork(agent);
    if (fromAgent) return fact(parseNetworkConfig(fromAgent));
    return factError(why);
  } catch (e) {
    return factError(errorText(e));
  }
}

/** Our lease as the agent reports it, when the registry cannot be read. */
function leaseFromAgent(a: Fact<AgentFacts>): Lease | null {
  if (!a.ok || !a.value.status.lease) return null;
  const s = a.value.status;
  const subnet = parseCidr(s.lease!.subnet);
  const pub = parseIp4(s.lease!.publicIp);
  if (!subnet || pub === null) return null;
  const view = s.leases.find((l) => l.own);
  return {
    subnet,
    key: cidrToKey(subnet),
    attrs: {
      publicIp: pub,
      backendType: view?.backendType ?? "",
      vxlan: view?.vni != null && view.vtepMac ? { VNI: view.vni, VtepMAC: view.vtepMac } : null,
    },
    expiresAt: s.lease!.expiresAt ? Date.parse(s.lease!.expiresAt) : null,
    revision: 0,
  };
}

/** Gathers every fact doctor judges. */
export async function gatherFacts(o: GatherOptions): Promise<Facts> {
  const now = Date.now();
  const pre = resolveSettings(o.input, null, null, readSubnetEnv);
  const agent = await attempt(() => (o.agent ? o.agent() : askAgent(pre.settings.http)));
  const r = resolveSettings(
    o.input,
    agent.ok ? agent.value.options : null,
    agent.ok ? agent.value.status.backend : null,
    readSubnetEnv,
  );
  const s = r.settings;
  let underlayIp6: string | null = null;
  const [reg, underlay, kernel] = await Promise.all([
    r.kube
      ? readKubeFacts(r, o.kubeView)
      : o.registry
        ? agentRegistry(r, agent, o.registry)
        : readRegistry(r, agent),
    attempt<UnderlayFacts>(async () => {
      const c = await findInterface(r.iface);
      underlayIp6 = c.ifaceIp6 === null ? null : formatIp6(c.ifaceIp6);
      return { name: c.iface.name, mtu: c.iface.mtu, ifaceIp: c.ifaceIp, publicIp: r.publicIp ?? c.ifaceIp };
    }),
    run(["uname", "-r"]),
  ]);
  const { registry, config } = reg;
  const kube = "kube" in reg ? reg.kube : null;
  let ownLease: Lease | null = null;
  // with --kube-subnet-mgr our lease is our Node's podCIDR, whatever address it carries
  if ("kube" in reg) ownLease = reg.ownLease;
  else if (registry.ok && underlay.ok)
    ownLease = registry.value.leases.find((l) => l.attrs.publicIp === underlay.value.publicIp) ?? null;
  if (!registry.ok) ownLease = leaseFromAgent(agent);

  const backend = s.backend ?? (config.ok ? config.value.backend.type : null);
  const vni = config.ok ? config.value.backend.vni : 1;
  const overlay = backend ? backendFacts(backend).overlayDevice(vni) : null;
  const links = await readLinks();
  const overlayExists = links.ok && overlay !== null && links.value.some((l) => l.name === overlay);
  const datapath = await gatherDatapath({
    backend,
    overlay,
    overlayExists,
    links,
    underlay,
    bpffs: s.bpffs,
    bridge: s.bridge,
  });

  const facts: Facts = {
    now,
    kernel: kernel.stdout.trim(),
    settings: s,
    agent,
    config,
    registry,
    kube,
    underlay,
    ownLease,
    subnetEnv: readSubnetEnv(s.subnetFile),
    links,
    routes: datapath.routes,
    neighbours: datapath.neighbours,
    fdb: datapath.fdb,
    sysctls: datapath.sysctls,
    nft: datapath.nft,
    cni: readCni(s.cniConfDir),
    offload: datapath.offload,
    bpf: datapath.bpf,
    probes: null,
    ipv6: config.ok && config.value.ipv6 ? await gatherIpv6(backend, vni, underlayIp6, ipJson) : null,
  };
  if (!o.probe) return facts;
  const d = derive(facts);
  const chosen = probeWindow(d.peers, o.probeSample);
  const probes = await inBatches(chosen, PROBES_AT_ONCE, (l) =>
    probePeer(
      l,
      d.backend === "host-gw" ? formatIp4(l.attrs.publicIp) : formatIp4(l.subnet.ip),
      o.probeTimeoutS,
    ),
  );
  return { ...facts, probes };
}

/** The peers to probe: all of them, or `sample.max` of them in subnet order from where the last run stopped. */
export function probeWindow<T extends { readonly subnet: { readonly ip: number } }>(
  peers: readonly T[],
  sample: GatherOptions["probeSample"],
): T[] {
  if (!sample || peers.length <= sample.max) return [...peers];
  const sorted = [...peers].sort((a, b) => a.subnet.ip - b.subnet.ip);
  const from = (sample.round * sample.max) % sorted.length;
  return Array.from({ length: sample.max }, (_, i) => sorted[(from + i) % sorted.length]!);
}
