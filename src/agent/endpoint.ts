/**
 * The agent's HTTP endpoint: the Hono app (src/http/app.ts) fed with the agent's status,
 * its redacted options and network config, and the latest doctor report, served on
 * --http and, when asked, on flanneld's --healthz-port too.
 */
import type { Server } from "bun";
import { formatIp4 } from "../config/cidr.ts";
import { formatIp6 } from "../config/cidr6.ts";
import type { AgentOptions, HostPort } from "../config/options.ts";
import { LatestDoctor } from "../doctor/latest.ts";
import { doctorInputFromAgent, runChecks } from "../doctor/run.ts";
import { createApp } from "../http/app.ts";
import type { KubeSource } from "../lease/kube-source.ts";
import type { Logger } from "../log.ts";
import { VERSION } from "../version.ts";
import { collectSoon, LARGE_BATCH } from "./collect.ts";
import type { Agent } from "./node.ts";

/** The options as shown at /v1/config: the etcd password replaced. */
export function redactedOptions(o: AgentOptions): Record<string, unknown> {
  const reg =
    o.registry.kind === "etcd" && o.registry.password
      ? { ...o.registry, password: "<redacted>" }
      : o.registry;
  return {
    ...o,
    registry: reg,
    ifaceCanReach:
      o.ifaceCanReach !== null
        ? formatIp4(o.ifaceCanReach)
        : o.ifaceCanReach6
          ? formatIp6(o.ifaceCanReach6)
          : null,
    ifaceCanReach6: undefined,
    publicIp: o.publicIp === null ? null : formatIp4(o.publicIp),
    publicIpv6: o.publicIpv6 ? formatIp6(o.publicIpv6) : null,
  };
}

/**
 * Peers the background doctor pings per run (every minute): a window that moves along
 * the peers from run to run. Pinging all of them was a burst of one process per peer —
 * 10,000 at once on a large cluster (bench/CONTROL-PLANE.md).
 */
export const DOCTOR_PROBES = 32;

/**
 * How long the background doctor waits between runs: a minute up to 1,000 leases, a
 * minute per 1,000 leases beyond (10,000 → 10 min). A run reads kernel tables that grow
 * with the cluster (the subnet map, routes, neighbours) and judges every lease: ~0.3 s of
 * CPU at 10,000 leases (bench/CONTROL-PLANE.md); this keeps its average cost flat.
 */
export function doctorEveryMs(leases: number): number {
  return 60_000 * Math.max(1, Math.ceil(leases / 1000));
}

/** A listen address that cannot be served: the agent cannot start. */
export class ListenError extends Error {
  override name = "ListenError";
}

export class Endpoint {
  /** The latest doctor report for GET /v1/doctor, refreshed in the background once running. */
  readonly doctor: LatestDoctor;
  readonly #servers: Server<undefined>[] = [];

  constructor(o: AgentOptions, agent: Agent, log: Logger) {
    const network = () => (agent.config ? JSON.parse(agent.config.raw) : null);
    let round = 0;
    this.doctor = new LatestDoctor(
      () =>
        runChecks({
          input: doctorInputFromAgent(o),
          fix: false,
          strict: false,
          probe: true,
          probeTimeoutS: 1,
          agent: async () => ({
            status: await agent.status(),
            options: redactedOptions(o),
            network: network(),
          }),
          registry: () => agent.registryView(),
          probeSample: { max: DOCTOR_PROBES, round: round++ },
          kubeView: () => (agent.source as Partial<KubeSource>).view?.() ?? null,
        }).finally(() => {
          // a run over 10,000 leases leaves ~30 MiB of garbage (bench/CONTROL-PLANE.md)
          if ((agent.sync?.leases.size ?? 0) >= LARGE_BATCH) collectSoon();
        }),
      () => doctorEveryMs(agent.sync?.leases.size ?? 0),
    );
    const app = createApp({
      doctor: () => this.doctor.latest(),
      status: (opts) => agent.status(opts),
      config: () => ({ options: redactedOptions(o), network: network(), version: VERSION }),
    });
    const listen = (at: HostPort, what: string) => {
      try {
        this.#servers.push(Bun.serve({ fetch: app.fetch, hostname: at.host, port: at.port }));
        log.info(`serving ${what}`, { address: `${at.host}:${at.port}` });
      } catch (e) {
        this.stop();
        throw new ListenError(`cannot listen on ${at.host}:${at.port} (${what}): ${(e as Error).message}`);
      }
    };
    listen(o.http, "status endpoint");
    if (o.healthz) listen(o.healthz, "flanneld-style healthz");
  }

  stop(): void {
    this.doctor.stop();
    for (const s of this.#servers.splice(0)) s.stop(true);
  }
}
