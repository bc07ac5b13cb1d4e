/**
 * `tartan agent`: the wiring. Takes the subnet-file lock, checks what the node left
 * behind, resolves the underlay interface (so a bad --iface fails at once), opens the
 * lease source, then runs the Agent (node.ts) behind the HTTP endpoint, with a watchdog
 * once it is running and systemd told when it is ready. SIGTERM/SIGINT stop it and leave
 * the datapath in place, so a restart does not cut traffic.
 */
import type { ExternalInterface } from "../backend/backend.ts";
import { formatCidr, formatIp4 } from "../config/cidr.ts";
import { formatIp6 } from "../config/cidr6.ts";
import type { AgentOptions } from "../config/options.ts";
import { readSubnetEnv, type SubnetEnv } from "../config/subnet-env.ts";
import { stateFilePath } from "../lease/memory.ts";
import { openLeaseSource } from "../lease/open.ts";
import type { Logger } from "../log.ts";
import { findInterface } from "../net/iface.ts";
import { VERSION } from "../version.ts";
import { Endpoint } from "./endpoint.ts";
import { subnetFileLock, takeLock } from "./lock.ts";
import { Agent } from "./node.ts";
import { SystemdNotifier } from "./sd-notify.ts";
import { Watchdog } from "./watchdog.ts";

/** Fatal start-up problems an operator must fix; the message says how. */
export class AgentError extends Error {
  override name = "AgentError";
}

export async function runAgent(o: AgentOptions, log: Logger): Promise<number> {
  // one agent per subnet file, decided before anything is read or touched
  const lock = takeLock(subnetFileLock(o.subnetFile), `--subnet-file=${o.subnetFile}`);
  try {
    const previousEnv = previousSubnetEnv(o);
    let extIface = await resolveInterface(o, log);
    const stateFile = stateFilePath(o.stateDir, o.nodeName);
    const source = await openLeaseSource({ ...o, stateFile }, log);
    try {
      // flanneld reads an address an operator stored for the node (node-public-ip) before
      // choosing its own: it replaces --public-ip
      const stored = source.storedPublicIp ? await source.storedPublicIp() : null;
      if (stored !== null && stored !== extIface.publicIp) extIface = { ...extIface, publicIp: stored };
    } catch (e) {
      await source.close().catch(() => {});
      throw e;
    }
    return await supervise(o, new Agent({ o, source, extIface, previousEnv, stateFile, log }), log);
  } finally {
    lock.release();
  }
}

/** subnet.env as the node left it; a corrupt one stops the start: it may be what pods use now. */
function previousSubnetEnv(o: AgentOptions): SubnetEnv | null {
  const prev = readSubnetEnv(o.subnetFile);
  if (prev.kind === "invalid")
    throw new AgentError(
      `--subnet-file=${o.subnetFile} is corrupt (${prev.reason}); fix it or delete it (tartan then picks a subnet again)`,
    );
  return prev.kind === "ok" ? prev.env : null;
}

async function resolveInterface(o: AgentOptions, log: Logger): Promise<ExternalInterface> {
  let choice: Awaited<ReturnType<typeof findInterface>>;
  try {
    choice = await findInterface({
      names: o.ifaces,
      regexes: o.ifaceRegex,
      canReach: o.ifaceCanReach,
      canReach6: o.ifaceCanReach6 ?? null,
    });
  } catch (e) {
    throw new AgentError((e as Error).message);
  }
  const publicIp = o.publicIp ?? choice.ifaceIp;
  // used only when the network config turns IPv6 on (node.ts checks there is one then)
  const publicIpv6 = o.publicIpv6 ?? choice.ifaceIp6;
  const { iface } = choice;
  log.info("using interface", {
    iface: iface.name,
    ifaceIp: formatIp4(choice.ifaceIp),
    publicIp: formatIp4(publicIp),
    ...(choice.ifaceIp6 !== null ? { ifaceIpv6: formatIp6(choice.ifaceIp6) } : {}),
    ...(publicIpv6 !== null ? { publicIpv6: formatIp6(publicIpv6) } : {}),
    mtu: iface.mtu,
  });
  return {
    name: iface.name,
    index: iface.index,
    publicIp,
    ifaceIp: choice.ifaceIp,
    publicIpv6,
    ifaceIpv6: choice.ifaceIp6,
    mtu: iface.mtu,
    mac: iface.mac,
  };
}

/**
 * Runs the agent until a signal: endpoint first (so probes answer while it waits), then
 * the start sequence, then readiness (systemd), the watchdog and the doctor. A start that
 * fails removes what it created and rethrows; a signal during the start is a clean stop.
 */
async function supervise(o: AgentOptions, agent: Agent, log: Logger): Promise<number> {
  const notifier = new SystemdNotifier(process.env.NOTIFY_SOCKET, log);
  let endpoint: Endpoint | null = null;
  let watchdog: Watchdog | null = null;
  let stopped: Promise<void> | null = null;
  const stop = (failedStart: boolean) => {
    stopped ??= (async () => {
      notifier.stopping();
      watchdog?.stop();
      endpoint?.stop();
      await agent.stop(failedStart);
    })();
    return stopped;
  };
  let signalled = false;
  let onStopSignal: () => void = () => {};
  const signal = new Promise<void>((r) => {
    onStopSignal = r;
  });
  const onSignal = (sig: NodeJS.Signals) => {
    if (signalled) return;
    signalled = true;
    log.info("stopping; the datapath stays in place", { signal: sig });
    void stop(false);
    onStopSignal();
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  try {
    endpoint = new Endpoint(o, agent, log);
    log.info("tartan agent starting", {
      version: VERSION,
      node: o.nodeName,
      registry: agent.health.description,
      subnetFile: o.subnetFile,
    });
    const lease = await agent.start();
    watchdog = startWatchdog(agent, log);
    endpoint.doctor.start();
    notifier.ready(`holding ${formatCidr(lease.subnet)}`);
    log.info("agent running", {
      subnet: formatCidr(lease.subnet),
      leases: agent.sync?.leases.size ?? 0,
      programmed: agent.sync?.programmed.size ?? 0,
    });
    await signal;
    await stop(false);
    return 0;
  } catch (e) {
    if (signalled) {
      await stop(false);
      return 0;
    }
    await stop(true);
    throw e;
  } finally {
    process.off("SIGTERM", onSignal);
    process.off("SIGINT", onSignal);
  }
}

function startWatchdog(agent: Agent, log: Logger): Watchdog {
  const sync = agent.sync!;
  const dog = new Watchdog({
    backend: agent.backend!,
    announced: agent.announced!,
    ownLease: () => agent.keeper?.lease ?? null,
    reprogramAll: () => sync.reprogramAll(),
    programmed: () => sync.programmed.size,
    log,
    metrics: agent.metrics,
  });
  dog.start();
  return dog;
}
