/**
 * `tartan agent`: the node's control loop. Opens the registry, loads the network config,
 * prepares the backend, acquires and renews our lease, writes subnet.env, follows every
 * lease into the datapath, and serves the status endpoint. SIGTERM/SIGINT stop it and
 * leave the datapath in place, so a restart does not cut traffic.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Server } from "bun";
import type { Backend } from "../backend/backend.ts";
import { createBackend } from "../backend/index.ts";
import type { AgentOptions } from "../cli/options.ts";
import { cidrToKey, formatCidr, formatIp4 } from "../config/cidr.ts";
import { type NetworkConfig, parseNetworkConfig } from "../config/network.ts";
import { readSubnetEnv, writeFileAtomic, writeSubnetEnv } from "../config/subnet-env.ts";
import { doctorInputFromAgent, runChecks } from "../doctor/command.ts";
import { LatestDoctor } from "../doctor/latest.ts";
import { createApp } from "../http/app.ts";
import type { Lease } from "../lease/lease.ts";
import { errorText, type Logger } from "../log.ts";
import { findInterface } from "../net/iface.ts";
import { openRegistry } from "../registry/index.ts";
import type { Registry } from "../registry/registry.ts";
import { COMMIT, VERSION } from "../version.ts";
import { MasqKeeper } from "./ip-masq.ts";
import { LeaseKeeper } from "./lease-keeper.ts";
import { LeaseSync } from "./lease-sync.ts";
import { type AgentStatus, type LeaseView, newMetrics } from "./status.ts";

/** Fatal start-up problems an operator must fix; the message says how. */
export class AgentError extends Error {
  override name = "AgentError";
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function redactedOptions(o: AgentOptions): Record<string, unknown> {
  const reg =
    o.registry.kind === "etcd" && o.registry.password
      ? { ...o.registry, password: "<redacted>" }
      : o.registry;
  return {
    ...o,
    registry: reg,
    ifaceCanReach: o.ifaceCanReach === null ? null : formatIp4(o.ifaceCanReach),
    publicIp: o.publicIp === null ? null : formatIp4(o.publicIp),
  };
}

async function loadConfig(
  o: AgentOptions,
  registry: Registry,
  log: Logger,
  stopped: () => boolean,
): Promise<NetworkConfig> {
  if (o.netConfigPath) {
    let text: string;
    try {
      text = readFileSync(o.netConfigPath, "utf8");
    } catch (e) {
      throw new AgentError(`--net-config-path=${o.netConfigPath}: cannot read it: ${(e as Error).message}`);
    }
    try {
      return parseNetworkConfig(text);
    } catch (e) {
      throw new AgentError(`--net-config-path=${o.netConfigPath}: ${(e as Error).message}`);
    }
  }
  let waitedLog = 0;
  let backoff = 500;
  while (!stopped()) {
    let raw: string | null = null;
    try {
      raw = await registry.getConfig();
    } catch (e) {
      log.warn("cannot read the network config from the registry, retrying", {
        registry: registry.description,
        error: errorText(e),
      });
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 10_000);
      continue;
    }
    if (raw !== null) {
      try {
        return parseNetworkConfig(raw);
      } catch (e) {
        throw new AgentError(
          `the network config in ${registry.description} is invalid: ${(e as Error).message}; fix it with tartan config set FILE`,
        );
      }
    }
    if (Date.now() - waitedLog > 30_000) {
      waitedLog = Date.now();
      log.warn("no network config in the registry yet; waiting (set one with: tartan config set FILE)", {
        registry: registry.description,
      });
    }
    await sleep(1000);
  }
  throw new AgentError("stopped");
}

export async function runAgent(o: AgentOptions, log: Logger): Promise<number> {
  const started = new Date();
  const metrics = newMetrics();
  let stopping = false;
  let registryState: "ok" | "degraded" | "connecting" = "connecting";
  let registryError: string | null = null;
  let config: NetworkConfig | null = null;
  let backend: Backend | null = null;
  let keeper: LeaseKeeper | null = null;
  let sync: LeaseSync | null = null;
  let masq: MasqKeeper | null = null;
  let watchdog: ReturnType<typeof setInterval> | null = null;
  let subnetWritten = false;
  let localSet = false;
  let phase = "starting";
  let lastBeat = Date.now();
  const beat = setInterval(() => {
    lastBeat = Date.now();
  }, 1000);

  // Refuse a corrupt subnet.env before touching anything: it may be what pods use now.
  const prev = readSubnetEnv(o.subnetFile);
  if (prev.kind === "invalid")
    throw new AgentError(
      `--subnet-file=${o.subnetFile} is corrupt (${prev.reason}); fix it or delete it (tartan then picks a subnet again)`,
    );

  // What this node held before (survives reboots, unlike /run/flannel/subnet.env).
  const stateFile = join(o.stateDir, `${o.nodeName}.lease`);
  const heldBefore = existsSync(stateFile) ? readFileSync(stateFile, "utf8").trim() || null : null;

  const registry = await openRegistry(o.registry, log);
  const onRegistryError = (e: unknown) => {
    registryState = "degraded";
    registryError = errorText(e);
  };
  const onRegistryOk = () => {
    if (registryState !== "ok") log.info("registry reachable", { registry: registry.description });
    registryState = "ok";
    registryError = null;
  };

  const status = async (opts: { leases?: boolean } = {}): Promise<AgentStatus> => {
    const own = keeper?.lease ?? null;
    const health: string[] = [];
    const ready: string[] = [];
    if (Date.now() - lastBeat > 5000) health.push("agent loop stalled");
    if (stopping) health.push("agent is stopping");
    if (backend) {
      const h = await backend.health().catch((e) => ({ ok: false, reason: errorText(e) }));
      if (!h.ok) health.push(`datapath: ${h.reason ?? "not attached"}`);
    } else if (phase === "failed") health.push("agent failed to start");
    if (!config) ready.push("waiting for the network config");
    if (!own) ready.push(phase === "acquiring" ? "acquiring a lease" : "no lease held");
    if (!subnetWritten) ready.push(`${o.subnetFile} not written yet`);
    if (!localSet) ready.push("datapath not set up for our subnet yet");
    if (!sync?.synced) ready.push("datapath not yet in sync with the registry");
    if (registryState !== "ok")
      ready.push(`registry ${registryState}${registryError ? `: ${registryError}` : ""}`);
    const ownKey = own?.key;
    const leases: LeaseView[] =
      opts.leases === false
        ? []
        : [...(sync?.leases.values() ?? [])].map((l) => ({
            subnet: formatCidr(l.subnet),
            publicIp: formatIp4(l.attrs.publicIp),
            backendType: l.attrs.backendType,
            vni: l.attrs.vxlan?.VNI ?? null,
            vtepMac: l.attrs.vxlan?.VtepMAC ?? null,
            expiresAt: l.expiresAt === null ? null : new Date(l.expiresAt).toISOString(),
            own: l.key === ownKey,
            programmed: l.key === ownKey ? localSet : (sync?.programmed.has(l.key) ?? false),
          }));
    const counts = {
      leases: sync?.leases.size ?? 0,
      programmed: sync
        ? [...sync.programmed.keys()].filter((k) => k !== ownKey && sync?.leases.has(k)).length
        : 0,
    };
    const renewAt = keeper?.renewAt ?? null;
    return {
      node: o.nodeName,
      version: `${VERSION} (${COMMIT})`,
      backend: backend?.name ?? o.backend,
      startedAt: started.toISOString(),
      network: config ? formatCidr(config.network) : null,
      registry: {
        description: registry.description,
        state: registryState,
        lastError: registryError,
        revision: sync?.revision ?? 0,
      },
      lease: own
        ? {
            subnet: formatCidr(own.subnet),
            publicIp: formatIp4(own.attrs.publicIp),
            expiresAt: own.expiresAt === null ? null : new Date(own.expiresAt).toISOString(),
            renewAt: renewAt === null ? null : new Date(renewAt).toISOString(),
          }
        : null,
      subnetFile: { path: o.subnetFile, written: subnetWritten },
      leases,
      counts,
      health: { ok: health.length === 0, reasons: health },
      ready: { ok: ready.length === 0, reasons: ready },
      counters: backend ? await backend.counters().catch(() => ({})) : {},
      metrics,
    };
  };

  // The latest doctor report for GET /v1/doctor, refreshed in the background once running.
  const doctor = new LatestDoctor(() =>
    runChecks({
      input: doctorInputFromAgent(o),
      fix: false,
      strict: false,
      probe: true,
      probeTimeoutS: 1,
      agent: async () => ({
        status: await status(),
        options: redactedOptions(o),
        network: config ? JSON.parse(config.raw) : null,
      }),
    }),
  );
  const app = createApp({
    doctor: () => doctor.latest(),
    status,
    config: () => ({
      options: redactedOptions(o),
      network: config ? JSON.parse(config.raw) : null,
      version: VERSION,
    }),
  });
  const servers: Server<undefined>[] = [];
  const listen = (host: string, port: number, what: string) => {
    try {
      servers.push(Bun.serve({ fetch: app.fetch, hostname: host, port }));
      log.info(`serving ${what}`, { address: `${host}:${port}` });
    } catch (e) {
      throw new AgentError(`cannot listen on ${host}:${port} (${what}): ${(e as Error).message}`);
    }
  };

  let resolveDone: (code: number) => void = () => {};
  const done = new Promise<number>((r) => {
    resolveDone = r;
  });
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info("stopping; the datapath stays in place", { signal });
    doctor.stop();
    keeper?.stop();
    sync?.stop();
    masq?.stop();
    if (watchdog) clearInterval(watchdog);
    clearInterval(beat);
    await backend?.close().catch((e) => log.warn("backend close failed", { error: errorText(e) }));
    for (const s of servers) s.stop(true);
    await registry.close().catch(() => {});
    resolveDone(0);
  };
  const onSig = (sig: NodeJS.Signals) => void shutdown(sig);
  process.on("SIGTERM", onSig);
  process.on("SIGINT", onSig);

  try {
    listen(o.http.host, o.http.port, "status endpoint");
    if (o.healthz) listen(o.healthz.host, o.healthz.port, "flanneld-style healthz");
    log.info("tartan agent starting", {
      version: VERSION,
      node: o.nodeName,
      registry: registry.description,
      subnetFile: o.subnetFile,
    });

    config = await loadConfig(o, registry, log, () => stopping);
    onRegistryOk();
    const backendName = o.backend ?? config.backend.type;
    log.info("network config loaded", {
      network: formatCidr(config.network),
      subnetLen: config.subnetLen,
      backend: backendName,
      vni: config.backend.vni,
      port: config.backend.port,
    });
    let choice: Awaited<ReturnType<typeof findInterface>>;
    try {
      choice = await findInterface({ names: o.ifaces, regexes: o.ifaceRegex, canReach: o.ifaceCanReach });
    } catch (e) {
      throw new AgentError((e as Error).message);
    }
    const publicIp = o.publicIp ?? choice.ifaceIp;
    log.info("using interface", {
      iface: choice.iface.name,
      ifaceIp: formatIp4(choice.ifaceIp),
      publicIp: formatIp4(publicIp),
      mtu: choice.iface.mtu,
    });
    backend = await createBackend(backendName, {
      log: log.with({ backend: backendName }),
      nodeName: o.nodeName,
      config,
      extIface: {
        name: choice.iface.name,
        index: choice.iface.index,
        publicIp,
        ifaceIp: choice.ifaceIp,
        mtu: choice.iface.mtu,
        mac: choice.iface.mac,
      },
      bpffs: o.bpffs,
      decap: o.decap,
    });
    const ann = await backend.prepare();
    const cfg = config;
    const be = backend;

    const onLease = async (lease: Lease) => {
      writeSubnetEnv(o.subnetFile, {
        network: cfg.network,
        subnet: lease.subnet,
        mtu: ann.mtu,
        ipMasq: o.ipMasq,
      });
      subnetWritten = true;
      log.info("wrote subnet file", { path: o.subnetFile, subnet: formatCidr(lease.subnet), mtu: ann.mtu });
      await be.setLocal(lease);
      if (o.ipMasq) {
        masq ??= new MasqKeeper(cfg.network, log);
        await masq.set(lease.subnet);
      }
      localSet = true;
      await sync?.reconcile();
    };
    keeper = new LeaseKeeper({
      registry,
      config: cfg,
      attrs: { publicIp, backendType: ann.backendType, vxlan: ann.vxlan },
      ttlMs: o.leaseTtlMs,
      renewMarginMs: o.renewMarginMs,
      previous: prev.kind === "ok" && prev.env.network.ip === cfg.network.ip ? prev.env.subnet : null,
      owned: new Set([
        ...(prev.kind === "ok" ? [cidrToKey(prev.env.subnet)] : []),
        ...(heldBefore ? [heldBefore] : []),
      ]),
      stateFile,
      log,
      metrics,
      onRegistryError,
      onRegistryOk,
      onLease: (l) =>
        void onLease(l).catch((e) =>
          log.error("applying the re-acquired lease failed", { error: errorText(e) }),
        ),
    });
    phase = "acquiring";
    const lease = await keeper.acquire();
    const k = keeper;
    sync = new LeaseSync({
      registry,
      config: cfg,
      backend: be,
      log,
      metrics,
      ownKey: () => k.key,
      onOwnLeaseGone: () => {
        log.warn("our lease was removed from the registry; re-acquiring", { subnet: k.lease?.key });
        void k.lost();
      },
      onRegistryError,
      onRegistryOk,
    });
    await onLease(lease);
    await sync.start();
    phase = "running";
    doctor.start();
    // Watchdog: a datapath that broke under us (device deleted by hand, program detached)
    // is rebuilt and reprogrammed instead of being reported forever.
    const s2 = sync;
    let repairing = false;
    watchdog = setInterval(async () => {
      if (repairing || stopping) return;
      const h = await be.health().catch((e) => ({ ok: false, reason: errorText(e) }));
      if (h.ok) return;
      repairing = true;
      try {
        log.warn("datapath broken; rebuilding it", { reason: h.reason });
        const again = await be.prepare();
        if (again.vxlan?.VtepMAC !== ann.vxlan?.VtepMAC)
          log.warn("the rebuilt datapath has a new VTEP MAC", {
            old: ann.vxlan?.VtepMAC,
            new: again.vxlan?.VtepMAC,
          });
        const own = k.lease;
        if (own) await be.setLocal(own);
        await s2.reprogramAll();
        metrics.repairs++;
        log.info("datapath rebuilt and reprogrammed", { leases: s2.programmed.size });
      } catch (e) {
        log.error("rebuilding the datapath failed; retrying", { error: errorText(e) });
      } finally {
        repairing = false;
      }
    }, 5000);
    log.info("agent running", {
      subnet: formatCidr(lease.subnet),
      leases: sync.leases.size,
      programmed: sync.programmed.size,
    });
  } catch (e) {
    // a signal while still starting (waiting for config or a lease) is a clean stop
    const asked = stopping;
    phase = "failed";
    await shutdown("error");
    process.off("SIGTERM", onSig);
    process.off("SIGINT", onSig);
    if (asked) return 0;
    throw e;
  }
  const code = await done;
  process.off("SIGTERM", onSig);
  process.off("SIGINT", onSig);
  return code;
}
