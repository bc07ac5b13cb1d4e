import { describe, expect, test } from "bun:test";
import { createApp } from "../../src/http/app.ts";
import { type AgentStatus, newMetrics } from "../../src/status/status.ts";

function status(over: Partial<AgentStatus> = {}): AgentStatus {
  return {
    node: "n1",
    version: "0.1.0 (test)",
    backend: "alloc",
    startedAt: "2026-01-01T00:00:00.000Z",
    network: "198.19.0.0/16",
    registry: { description: "sqlite:/x", state: "ok", lastError: null, revision: 12 },
    lease: { subnet: "198.19.5.0/24", publicIp: "198.18.0.1", expiresAt: null, renewAt: null },
    subnetFile: { path: "/run/flannel/subnet.env", written: true },
    leases: [
      {
        subnet: "198.19.5.0/24",
        publicIp: "198.18.0.1",
        backendType: "vxlan",
        vni: 1,
        vtepMac: "aa:bb:cc:dd:ee:01",
        expiresAt: null,
        own: true,
        programmed: true,
      },
      {
        subnet: "198.19.6.0/24",
        publicIp: "198.18.0.2",
        backendType: "vxlan",
        vni: 1,
        vtepMac: "aa:bb:cc:dd:ee:02",
        expiresAt: null,
        own: false,
        programmed: true,
      },
    ],
    counts: { leases: 2, programmed: 1 },
    health: { ok: true, reasons: [] },
    ready: { ok: true, reasons: [] },
    counters: { encap_ok: 10, decap_ok: 7, pod_encap_ok: 12, host_encap_ok: 2, subnets: 1 },
    metrics: { ...newMetrics(), renewals: 3 },
    ...over,
  };
}

const appWith = (s: AgentStatus) =>
  createApp({ status: async () => s, config: () => ({ options: { registry: { password: "<redacted>" } } }) });

describe("HTTP endpoint", () => {
  test("/healthz 200 when healthy, with the registry state", async () => {
    const r = await appWith(
      status({ registry: { description: "x", state: "degraded", lastError: "down", revision: 1 } }),
    ).request("/healthz");
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ status: "ok", reasons: [], registry: "degraded" });
  });
  test("/healthz 503 with a JSON reason when the datapath is detached", async () => {
    const r = await appWith(
      status({ health: { ok: false, reasons: ["datapath: tc program missing on eth0"] } }),
    ).request("/healthz");
    expect(r.status).toBe(503);
    expect(((await r.json()) as { reasons: string[] }).reasons).toEqual([
      "datapath: tc program missing on eth0",
    ]);
  });
  test("/readyz 200 when ready, 503 naming what is missing", async () => {
    expect((await appWith(status()).request("/readyz")).status).toBe(200);
    const r = await appWith(status({ ready: { ok: false, reasons: ["acquiring a lease"] } })).request(
      "/readyz",
    );
    expect(r.status).toBe(503);
    expect(await r.json()).toEqual({ status: "not ready", reasons: ["acquiring a lease"] });
  });
  test("/v1/config returns the effective config (secrets redacted by the agent)", async () => {
    const r = await appWith(status()).request("/v1/config");
    expect(r.status).toBe(200);
    expect(JSON.stringify(await r.json())).toContain("<redacted>");
  });
  test("/v1/leases lists every lease and whether it is programmed", async () => {
    const body = (await (await appWith(status()).request("/v1/leases")).json()) as {
      revision: number;
      leases: { subnet: string; programmed: boolean }[];
    };
    expect(body.revision).toBe(12);
    expect(body.leases.map((l) => [l.subnet, l.programmed])).toEqual([
      ["198.19.5.0/24", true],
      ["198.19.6.0/24", true],
    ]);
  });
  test("/v1/status is the whole snapshot", async () => {
    expect(((await (await appWith(status()).request("/v1/status")).json()) as { node: string }).node).toBe(
      "n1",
    );
  });
  test("/metrics is Prometheus text with leases, renewals, readiness and datapath counters", async () => {
    const r = await appWith(status()).request("/metrics");
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toContain("text/plain; version=0.0.4");
    const text = await r.text();
    for (const line of [
      "tartan_leases 2",
      "tartan_leases_programmed 1",
      "tartan_lease_renewals_total 3",
      "tartan_registry_errors_total 0",
      "tartan_ready 1",
      'tartan_datapath_packets_total{reason="encap_ok"} 10',
      // every attach point's verdicts are packet counters; what is not a verdict is a gauge
      'tartan_datapath_packets_total{reason="pod_encap_ok"} 12',
      'tartan_datapath_packets_total{reason="host_encap_ok"} 2',
      "tartan_datapath_subnets 1",
    ])
      expect(text).toContain(`${line}\n`);
    expect(text).toContain("# TYPE tartan_lease_renewals_total counter");
  });
  test("/v1/doctor serves the latest doctor report, 404 when the agent has none", async () => {
    expect((await appWith(status()).request("/v1/doctor")).status).toBe(404);
    const report = { exitCode: 0, summary: "17 ok", checks: [] };
    const app = createApp({
      status: async () => status(),
      config: () => ({}),
      doctor: async () => report as unknown as import("../../src/doctor/report.ts").DoctorReport,
    });
    const r = await app.request("/v1/doctor");
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual(report);
  });
  test("unknown paths 404, other methods 405, nothing writable", async () => {
    const app = appWith(status());
    expect((await app.request("/nope")).status).toBe(404);
    for (const method of ["POST", "PUT", "DELETE", "PATCH"])
      for (const path of ["/healthz", "/readyz", "/v1/config", "/v1/leases", "/metrics"]) {
        const r = await app.request(path, { method, body: "{}" });
        expect(r.status).toBe(405);
        expect(r.headers.get("allow")).toBe("GET, HEAD");
      }
  });
});

describe("large responses", () => {
  test("/v1/status and /v1/leases with 2,500 leases (several slices) are exactly their JSON", async () => {
    const { statusWithLeases } = await import("../helpers/status-fixture.ts");
    const big = statusWithLeases(2500);
    const app = createApp({ status: async () => big, config: () => ({}) });
    const r = await app.request("/v1/status");
    expect(r.headers.get("content-type")).toContain("application/json");
    expect(await r.text()).toBe(JSON.stringify(big));
    const l = await app.request("/v1/leases");
    expect(await l.text()).toBe(JSON.stringify({ revision: big.registry.revision, leases: big.leases }));
  });

  test("no leases, and look-alikes of the field elsewhere: the same bytes as JSON.stringify", async () => {
    const { slicedJson } = await import("../../src/http/json-slices.ts");
    const empty = { a: 1, b: { leases: [] }, leases: [], c: '"leases":[]' };
    expect(await slicedJson(empty, "leases", []).text()).toBe(JSON.stringify(empty));
    const some = { b: { leases: [] }, leases: [1, 2], c: 3 };
    expect(await slicedJson(some, "leases", [1, 2]).text()).toBe(JSON.stringify(some));
  });
});
