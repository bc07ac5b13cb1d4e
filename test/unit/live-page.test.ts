import { describe, expect, test } from "bun:test";
import { parseCidr } from "../../src/config/cidr.ts";
import { checkPeers } from "../../src/doctor/checks.ts";
import type { ProbeResult } from "../../src/doctor/facts.ts";
import type { DoctorReport } from "../../src/doctor/report.ts";
import { createApp } from "../../src/http/app.ts";
import { formatDoctorMetrics, SLOWEST_PEERS, UNANSWERED_PEERS } from "../../src/http/doctor-metrics.ts";
import { esc, html } from "../../src/http/page/html.ts";
import { buildPage, parsePageQuery, seriesOf, subnetOrder } from "../../src/http/page/model.ts";
import { RING_DOTS } from "../../src/http/page/ring.ts";
import { peerProbes } from "../../src/http/peer-probes.ts";
import type { AgentStatus } from "../../src/status/status.ts";
import { statusWithLeases } from "../helpers/status-fixture.ts";
import { healthy, PEER } from "./doctor-fixture.ts";

const appFor = (s: AgentStatus, doctor?: () => Promise<DoctorReport>) =>
  createApp({ status: async () => s, config: () => ({}), doctor });

async function page(s: AgentStatus, path = "/", doctor?: () => Promise<DoctorReport>) {
  const r = await appFor(s, doctor).request(path);
  return { r, text: await r.text() };
}

/** Table rows: [subnet, node IP, programmed cell text]. */
function rows(text: string): string[][] {
  return [...text.matchAll(/<tr data-subnet="([^"]+)"[^>]*>(.*?)<\/tr>/g)].map((m) => [
    m[1]!,
    /data-col="node-ip">([^<]*)</.exec(m[2]!)![1]!,
    /data-col="programmed"><span class="st \w+">([^<]*)</.exec(m[2]!)![1]!,
  ]);
}

/** A doctor report with these probes, its peers check from the real check function. */
function reportWithProbes(probes: ProbeResult[]): DoctorReport {
  const c = checkPeers({ ...healthy(), probes });
  return {
    node: "n1",
    backend: "vxlan",
    kernel: "6.1",
    at: "2026-01-01T11:59:00.000Z",
    settings: {},
    checks: [
      {
        id: "mtu",
        status: "ok",
        finding: "mtu fine",
        why: "w",
        fix: "",
        fixable: false,
      },
      c,
    ],
    probes,
    summary: { ok: c.status === "ok" ? 2 : 1, warning: 0, problem: c.status === "problem" ? 1 : 0 },
    exitCode: c.status === "problem" ? 1 : 0,
  };
}

const probe = (i: number, rttMs: number | null): ProbeResult => ({
  lease: `198.19.${i}.0-24`,
  publicIp: `198.18.0.${i + 1}`,
  target: `198.19.${i}.0`,
  ok: rttMs !== null,
  rttMs,
  error: rttMs === null ? "timeout" : null,
});

describe("live page GET /", () => {
  test("the chart's encap line counts packets encapsulated at the bridge, the pod veths and the overlay device", () => {
    for (const n of ["encap_ok", "encap_ok_neigh", "pod_encap_ok", "pod_encap_ok_neigh", "host_encap_ok"])
      expect(seriesOf(n)).toBe("encap");
    for (const n of ["pod_pass_local", "host_pass_unknown_dst", "encap_pass_too_big", "pod_drop_fib"])
      expect(seriesOf(n)).toBeNull();
  });

  test("server-rendered: every lease with its node IP and programmed state, the node, the counters", async () => {
    const { r, text } = await page(statusWithLeases(3));
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toContain("text/html");
    expect(rows(text)).toEqual([
      ["198.19.0.0/24", "198.18.0.1", "local"],
      ["198.19.1.0/24", "198.18.0.2", "programmed"],
      ["198.19.2.0/24", "198.18.0.3", "programmed"],
    ]);
    expect(text).toContain('<tr data-counter="encap_ok" data-value="10" data-rate data-series="encap"');
    expect(text).toContain('data-counter="decap_drop_non_member" data-value="2" data-rate class="drop seen"');
    expect(text).toContain("<h1>n1</h1>");
    expect(text).toContain("tartan 0.1.0 (test)");
    // the ring: one dot per node, ours highlighted, every dot links to its lease
    expect(text.match(/<circle class="dot /g)?.length).toBe(3);
    expect(text.match(/<circle class="dot st-own"/g)?.length).toBe(1);
    expect(text).toContain('href="/?q=198.19.1.0%2F24"');
  });

  test("a lease not programmed here, health and readiness reasons, a degraded registry", async () => {
    const base = statusWithLeases(8);
    const { text } = await page({
      ...base,
      health: { ok: false, reasons: ["datapath: tc program missing on eth0"] },
      ready: { ok: false, reasons: ["registry degraded: connection refused"] },
      registry: { ...base.registry, state: "degraded", lastError: "connection refused" },
    });
    expect(rows(text).find((r) => r[0] === "198.19.5.0/24")![2]).toBe("not programmed");
    expect(text).toContain("1 not programmed");
    expect(text).toContain("<li>datapath: tc program missing on eth0</li>");
    expect(text).toContain("<li>registry degraded: connection refused</li>");
    expect(text).toContain('<span class="badge bad">registry degraded</span>');
  });

  test("doctor's report, problems first, and each peer's probe RTT or unreachable", async () => {
    const report = reportWithProbes([probe(1, 0.25), probe(2, null)]);
    const { text } = await page(statusWithLeases(3), "/", async () => report);
    const doctor = text.slice(text.indexOf('<div id="doctor"'));
    expect(doctor.indexOf('data-check="peers"')).toBeLessThan(doctor.indexOf('data-check="mtu"'));
    expect(text).toContain('<span class="st bad">unreachable</span>');
    expect(text).toContain("0.250 ms");
    expect(text).toContain('<circle class="dot st-unreachable"');
  });

  test("hostile registry content is text, never markup", async () => {
    const evil = [
      `<img src=x onerror="window.__pwned=1">`,
      `"><script>alert(1)</script>`,
      `' onmouseover='alert(1)`,
      "</textarea><svg/onload=alert(1)>",
    ];
    const base = statusWithLeases(4);
    const s: AgentStatus = {
      ...base,
      node: evil[1]!,
      registry: { ...base.registry, state: "degraded", lastError: evil[3]! },
      leases: base.leases.map((l, i) => (i ? { ...l, backendType: evil[i - 1]!, vtepMac: evil[i]! } : l)),
      health: { ok: false, reasons: [evil[0]!] },
      counters: { [evil[2]!]: 1 },
    };
    const report: DoctorReport = {
      ...reportWithProbes([probe(1, 1)]),
      checks: [
        { id: evil[0]!, status: "problem", finding: evil[1]!, why: evil[2]!, fix: evil[3]!, fixable: false },
      ],
    };
    for (const path of ["/", `/?q=${encodeURIComponent(evil[1]!)}`]) {
      const { text } = await page(s, path, async () => report);
      // only the page's own elements and attributes, whatever the registry says
      const tags = new Set([...text.matchAll(/<([a-zA-Z][\w-]*)/g)].map((m) => m[1]!.toLowerCase()));
      for (const t of ["script", "img", "textarea"]) expect(tags.has(t)).toBe(t === "script"); // our one <script src>
      expect(text.match(/<script/g)?.length).toBe(1);
      // every "<" opens one of our tags, whose attribute values hold no quote (escaped)
      const tagsAt = [
        ...text.matchAll(/<(?:!doctype html|\/?[a-zA-Z][\w-]*((?:\s+[\w-]+(?:="[^"]*")?)*)\s*\/?)>/g),
      ];
      expect(tagsAt.length).toBe(text.split("<").length - 1);
      const attrs = tagsAt.flatMap((m) =>
        (m[1] ?? "")
          .replace(/="[^"]*"/g, "")
          .split(/\s+/)
          .filter(Boolean),
      );
      expect(attrs.filter((a) => a.toLowerCase().startsWith("on"))).toEqual([]);
      expect(text).toContain(esc(evil[0]!));
      expect(text).not.toContain(evil[1]!);
      expect(text).not.toContain(evil[3]!);
    }
  });

  test("10,000 leases: one page of rows, a count, pagination, a ring of arcs", async () => {
    const s = statusWithLeases(10_000);
    const { text } = await page(s);
    expect(rows(text).length).toBe(100);
    expect(text).toContain("10,000 leases, showing 1–100");
    expect(text).toContain("page 1 of 100");
    expect(text.match(/<path class="arc /g)?.length).toBe(RING_DOTS);
    expect(text.match(/<circle class="dot st-own"/g)?.length).toBe(1);
    const p2 = await page(s, "/?page=3&limit=50");
    expect(rows(p2.text).map((r) => r[1])[0]).toBe("198.18.0.101");
    expect(p2.text).toContain("showing 101–150");
    const filtered = await page(s, "/?q=198.18.7.7");
    expect(rows(filtered.text).map((r) => r[1])).toEqual([
      "198.18.7.7",
      ...Array.from({ length: 10 }, (_, i) => `198.18.7.7${i}`),
    ]);
    expect(filtered.text).toContain("11 of 10,000 leases match");
    const unprog = await page(s, "/?show=unprogrammed&limit=1000");
    expect(rows(unprog.text).every((r) => r[2] === "not programmed")).toBe(true);
    expect(rows(unprog.text).length).toBe(s.leases.filter((l) => !l.own && !l.programmed).length);
  });

  test("a bad query is a 400 naming the parameter", async () => {
    for (const [q, want] of [
      ["page=0", "page must be at least 1"],
      ["limit=5000", "limit must be at most 1000"],
      ["page=abc", "page must be a whole number"],
      ["show=everything", "show must be one of all, unprogrammed, unreachable"],
    ]) {
      const { r, text } = await page(statusWithLeases(2), `/?${q}`);
      expect(r.status).toBe(400);
      expect(text).toContain(want!);
    }
    expect(() => parsePageQuery({ q: "x".repeat(101) })).toThrow("q must be at most 100 characters");
  });

  test("leases sort by subnet address, then prefix length; unparseable last", () => {
    for (const x of ["198.19.3.0/24", "10.0.0.0/8", "255.255.255.252/30", "0.0.0.0/0"]) {
      const c = parseCidr(x, false)!;
      expect(subnetOrder(x)).toBe(c.ip * 64 + c.len);
    }
    const sorted = [
      "198.19.10.0/24",
      "198.19.2.0/24",
      "bogus",
      "198.19.2.0/23",
      "1.2.3/24",
      "1.2.3.4/33",
    ].sort((a, b) => subnetOrder(a) - subnetOrder(b));
    expect(sorted.slice(0, 3)).toEqual(["198.19.2.0/23", "198.19.2.0/24", "198.19.10.0/24"]);
    expect(sorted.slice(3).map(subnetOrder)).toEqual([
      Number.MAX_SAFE_INTEGER,
      Number.MAX_SAFE_INTEGER,
      Number.MAX_SAFE_INTEGER,
    ]);
  });

  test("a page past the end shows the last one", async () => {
    const m = await buildPage(statusWithLeases(5), null, parsePageQuery({ page: "9", limit: "2" }), 0);
    expect(m.query.page).toBe(3);
    expect(m.rows.map((r) => r.subnet)).toEqual(["198.19.4.0/24"]);
  });

  test("strict CSP, read-only, assets embedded and served", async () => {
    const app = appFor(statusWithLeases(2));
    const r = await app.request("/");
    expect(r.headers.get("content-security-policy")).toContain("script-src 'self'");
    expect(r.headers.get("content-security-policy")).toContain("default-src 'none'");
    const text = await r.text();
    const js = /<script src="([^"]+)"/.exec(text)![1]!;
    const css = /<link rel="stylesheet" href="([^"]+)"/.exec(text)![1]!;
    const jr = await app.request(js);
    expect(jr.status).toBe(200);
    expect(jr.headers.get("content-type")).toContain("text/javascript");
    expect(await jr.text()).toContain("data-live");
    const cr = await app.request(css);
    expect(cr.headers.get("content-type")).toContain("text/css");
    expect(text).not.toMatch(/(src|href)="(https?:)?\/\//);
    for (const path of ["/", "/assets/live.js", "/assets/style.css"])
      for (const method of ["POST", "PUT", "DELETE"])
        expect((await app.request(path, { method })).status).toBe(405);
  });

  test("no doctor yet: the page and /metrics answer without waiting for the first run", async () => {
    const never = () => new Promise<DoctorReport>(() => {});
    const { r, text } = await page(statusWithLeases(2), "/", never);
    expect(r.status).toBe(200);
    expect(text).toContain("No doctor report yet");
    const m = await (await appFor(statusWithLeases(2), never).request("/metrics")).text();
    expect(m).toContain("# TYPE tartan_doctor_check gauge");
    expect(m).not.toContain("tartan_doctor_check{");
  });

  test("the html tag escapes interpolations and keeps nested html", () => {
    expect(html`<b title="${`"x'`}">${"<i>"}${html`<i>ok</i>`}${[1, "&"]}${null}${false}</b>`.value).toBe(
      '<b title="&quot;x&#39;">&lt;i&gt;<i>ok</i>1&amp;</b>',
    );
  });
});

describe("doctor's probes and findings as data and metrics", () => {
  test("peer probes from the report, by lease", () => {
    const r = reportWithProbes([probe(2, 0.12), probe(3, null)]);
    expect([...peerProbes(r).values()]).toEqual([
      { subnet: "198.19.2.0/24", publicIp: "198.18.0.3", target: "198.19.2.0", rttMs: 0.12 },
      { subnet: "198.19.3.0/24", publicIp: "198.18.0.4", target: "198.19.3.0", rttMs: null },
    ]);
    expect(peerProbes(reportWithProbes([])).size).toBe(0);
    expect(peerProbes({ ...reportWithProbes([]), probes: null }).size).toBe(0);
    expect(peerProbes(null).size).toBe(0);
    // the fixture's single healthy probe
    expect(peerProbes(reportWithProbes(healthy().probes as ProbeResult[])).get("198.19.2.0/24")?.rttMs).toBe(
      0.12,
    );
    expect(PEER.key).toBe("198.19.2.0-24");
  });

  test("checks by status, peer counts, and per-peer series bounded to the slowest and the unanswered", () => {
    const probes = Array.from({ length: 40 }, (_, i) => probe(i + 1, i % 3 === 0 ? null : i / 10));
    const text = formatDoctorMetrics(reportWithProbes(probes));
    expect(text).toContain('tartan_doctor_check{check="peers",status="problem"} 1\n');
    expect(text).toContain('tartan_doctor_check{check="peers",status="ok"} 0\n');
    expect(text).toContain('tartan_doctor_check{check="mtu",status="ok"} 1\n');
    expect(text).toContain('tartan_doctor_peers{state="unanswered"} 14\n');
    expect(text).toContain('tartan_doctor_peers{state="answered"} 26\n');
    expect(text).toContain("tartan_doctor_peer_rtt_max_seconds 0.0038\n");
    expect(text).toContain(
      `tartan_doctor_last_run_timestamp_seconds ${Date.parse("2026-01-01T11:59:00Z") / 1000}\n`,
    );
    const rtt = text.split("\n").filter((l) => l.startsWith("tartan_doctor_peer_rtt_seconds{"));
    expect(rtt.length).toBe(SLOWEST_PEERS);
    expect(rtt[0]).toBe('tartan_doctor_peer_rtt_seconds{peer="198.18.0.40",subnet="198.19.39.0/24"} 0.0038');
    expect(text.split("\n").filter((l) => l.startsWith("tartan_doctor_peer_unreachable{")).length).toBe(
      UNANSWERED_PEERS,
    );
  });

  test("/metrics with lease timestamps, registry state and doctor's findings passes promtool check metrics", async () => {
    const report = reportWithProbes([probe(1, 0.2), probe(2, null)]);
    const app = appFor(statusWithLeases(3, { node: 'node "a"\\b' }), async () => report);
    const text = await (await app.request("/metrics")).text();
    expect(text).toContain(
      `tartan_lease_expiry_timestamp_seconds ${Date.parse("2026-01-02T12:00:00Z") / 1000}\n`,
    );
    expect(text).toContain('tartan_registry_state{state="ok"} 1\n');
    expect(text).toContain(
      'tartan_build_info{node="node \\"a\\"\\\\b",version="0.1.0 (test)",backend="ebpf-vxlan"} 1',
    );
    expect(text).toContain('tartan_doctor_check{check="peers",status="problem"} 1\n');
    const p = Bun.spawnSync(["promtool", "check", "metrics"], { stdin: new TextEncoder().encode(text) });
    expect(`${p.stdout}${p.stderr}`).toBe("");
    expect(p.exitCode).toBe(0);
  });
});
