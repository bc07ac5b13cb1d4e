/**
 * The agent's pieces apart from its wiring: the watchdog (a broken datapath is rebuilt
 * and everything reprogrammed; a failed rebuild is retried) and the status snapshot (the
 * health and readiness verdicts, and the reasons an operator reads).
 */
import { describe, expect, test } from "bun:test";
import { agentStatus, type StatusFacts } from "../../src/agent/snapshot.ts";
import { Watchdog } from "../../src/agent/watchdog.ts";
import { cidrToKey, parseCidr, parseIp4 } from "../../src/config/cidr.ts";
import { parseNetworkConfig } from "../../src/config/network.ts";
import type { Lease } from "../../src/lease/lease.ts";
import { createLogger } from "../../src/log.ts";
import { newMetrics } from "../../src/status/status.ts";
import { RecordingBackend } from "../helpers/recording-backend.ts";

function lease(subnet: string, ip: string): Lease {
  const sn = parseCidr(subnet)!;
  return {
    subnet: sn,
    key: cidrToKey(sn),
    attrs: { publicIp: parseIp4(ip)!, backendType: "vxlan", vxlan: { VNI: 1, VtepMAC: "0e:00:00:00:00:01" } },
    expiresAt: null,
    revision: 1,
  };
}

describe("watchdog", () => {
  const setup = () => {
    const backend = new RecordingBackend();
    const metrics = newMetrics();
    let reprogrammed = 0;
    const own = lease("198.19.1.0/24", "198.18.0.1");
    const lines: string[] = [];
    const dog = new Watchdog({
      backend,
      announced: backend.announcement,
      ownLease: () => own,
      reprogramAll: async () => {
        reprogrammed++;
      },
      programmed: () => 0,
      log: createLogger({ write: (l) => lines.push(l) }),
      metrics,
    });
    return { backend, metrics, dog, lines, reprogrammed: () => reprogrammed };
  };

  test("a healthy datapath is left alone", async () => {
    const { backend, dog, metrics } = setup();
    await dog.check();
    expect({ prepares: backend.prepares, repairs: metrics.repairs }).toEqual({ prepares: 0, repairs: 0 });
  });

  test("a broken datapath is prepared again, given our subnet, and every lease reprogrammed", async () => {
    const { backend, dog, metrics, reprogrammed, lines } = setup();
    backend.healthy = { ok: false, reason: "overlay device tartan.1 is missing" };
    await dog.check();
    expect(backend.prepares).toBe(1);
    expect(backend.locals).toEqual(["198.19.1.0-24"]);
    expect(reprogrammed()).toBe(1);
    expect(metrics.repairs).toBe(1);
    expect(lines.join("\n")).toContain('reason="overlay device tartan.1 is missing"');
  });

  test("a rebuild that fails is logged and tried again on the next check; after stop nothing runs", async () => {
    const { backend, dog, metrics } = setup();
    backend.healthy = { ok: false, reason: "gone" };
    backend.prepare = async () => {
      backend.prepares++;
      throw new Error("cannot load");
    };
    await dog.check();
    await dog.check();
    expect(backend.prepares).toBe(2);
    expect(metrics.repairs).toBe(0);
    dog.stop();
    await dog.check();
    expect(backend.prepares).toBe(2);
  });
});

describe("status snapshot", () => {
  const cfg = parseNetworkConfig(JSON.stringify({ Network: "198.19.0.0/16" }));
  const own = lease("198.19.1.0/24", "198.18.0.1");
  const peer = lease("198.19.2.0/24", "198.18.0.2");
  const running: StatusFacts = {
    node: "n1",
    version: "v",
    backend: "vxlan",
    startedAt: new Date(0),
    phase: "running",
    stopping: false,
    stalledMs: 0,
    config: cfg,
    source: { description: "memory:test", state: "ok", lastError: null },
    revision: 7,
    own,
    renewAt: null,
    subnetFile: "/run/flannel/subnet.env",
    subnetWritten: true,
    localSet: true,
    leases: new Map([
      [own.key, own],
      [peer.key, peer],
    ]),
    programmed: new Map([[peer.key, peer]]),
    synced: true,
    datapath: { ok: true },
    counters: {},
    metrics: newMetrics(),
  };

  test("running: healthy and ready, every lease listed with what is programmed", () => {
    const s = agentStatus(running);
    expect(s.health).toEqual({ ok: true, reasons: [] });
    expect(s.ready).toEqual({ ok: true, reasons: [] });
    expect(s.counts).toEqual({ leases: 2, programmed: 1 });
    expect(s.leases.map((l) => [l.subnet, l.own, l.programmed])).toEqual([
      ["198.19.1.0/24", true, true],
      ["198.19.2.0/24", false, true],
    ]);
    expect(s.registry).toEqual({ description: "memory:test", state: "ok", lastError: null, revision: 7 });
    expect(agentStatus(running, false).leases).toEqual([]);
  });

  test("starting: not ready, with each missing step named; a failed start is unhealthy", () => {
    const s = agentStatus({
      ...running,
      phase: "acquiring",
      own: null,
      subnetWritten: false,
      localSet: false,
      synced: false,
      leases: null,
      programmed: null,
      datapath: null,
      source: { description: "memory:test", state: "degraded", lastError: "connection refused" },
    });
    expect(s.health.ok).toBe(true);
    expect(s.ready.reasons).toEqual([
      "acquiring a lease",
      "/run/flannel/subnet.env not written yet",
      "datapath not set up for our subnet yet",
      "datapath not yet in sync with the registry",
      "registry degraded: connection refused",
    ]);
    expect(agentStatus({ ...running, phase: "failed", datapath: null }).health.reasons).toEqual([
      "agent failed to start",
    ]);
  });

  test("a broken datapath, a stalled loop and a stop make it unhealthy, each with its reason", () => {
    const s = agentStatus({
      ...running,
      stalledMs: 6000,
      stopping: true,
      datapath: { ok: false, reason: "decap program not attached to eth0" },
    });
    expect(s.health.reasons).toEqual([
      "agent loop stalled",
      "agent is stopping",
      "datapath: decap program not attached to eth0",
    ]);
  });
});
