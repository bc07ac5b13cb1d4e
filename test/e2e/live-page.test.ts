/**
 * The live page (GET /) in a real browser: a 3-node ebpf-vxlan cluster with pod traffic,
 * headless Chromium inside node 1's namespace (it reaches the agent on that namespace's
 * loopback; nothing in the root namespace changes). The rendered DOM lists every lease
 * with its node IP and programmed state and the counters, rates and the chart go live;
 * hostile registry content stays text; a deleted lease leaves the page within 5 s without
 * a reload; the page works without JavaScript (curl, and the browser with scripts off).
 * The live /metrics passes promtool and carries every metric the Grafana dashboard and
 * the alert rules query. A screenshot goes to .test-report/live-page.png.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { silentLogger } from "../../src/log.ts";
import { SqliteRegistry } from "../../src/registry/sqlite.ts";
import { Browser, type Page } from "../helpers/browser.ts";
import { Cluster, type ClusterNode } from "../helpers/cluster.ts";
import type { LabProcess } from "../helpers/netns.ts";
import { until } from "../helpers/netns.ts";
import {
  alertRules,
  checkDashboardQueries,
  dashboardPanels,
  declaredFamilies,
  metricNames,
  promtool,
  ruleFiles,
} from "../helpers/observability.ts";
import { isRoot, ROOT, status, tartan } from "../helpers/tartan.ts";

const URL = "http://127.0.0.1:8471/";
const HOSTILE = `<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>`;
const HOSTILE_KEY = "198.19.250.0-24";

/** The table as the browser shows it: [subnet, node IP, programmed cell]. */
const ROWS = `[...document.querySelectorAll("#leases tr[data-subnet]")].map((tr) => [
  tr.dataset.subnet,
  tr.querySelector('[data-col="node-ip"]').textContent,
  tr.querySelector('[data-col="programmed"]').textContent,
])`;

describe.skipIf(!isRoot())("live page in a real browser, 3-node ebpf-vxlan cluster", () => {
  let cl: Cluster;
  let n1: ClusterNode;
  let browser: Browser;
  let page: Page;
  let traffic: LabProcess;

  beforeAll(async () => {
    cl = await Cluster.create({ backends: ["ebpf-vxlan", "ebpf-vxlan", "ebpf-vxlan"], tag: "lp" });
    n1 = cl.nodes[0]!;
    // pod traffic both ways so encap and decap counters move
    traffic = cl.lab.spawn(n1.pods[0]!.ns, "ping-n2", ["ping", "-i", "0.05", cl.nodes[1]!.pods[0]!.ip]);
    browser = await Browser.launch(cl.lab, n1.ns);
    page = await browser.newPage({ width: 1400, height: 1000 });
    await page.goto(URL);
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await cl?.close();
  });

  test("every lease with its node IP and programmed state, the counters; rates, chart and doctor go live", async () => {
    const s = await status(cl.lab, n1.ns);
    const want = s.leases
      .map((l) => [l.subnet, l.publicIp, l.own ? "local" : l.programmed ? "programmed" : "not programmed"])
      .sort();
    expect(want.length).toBe(3);
    expect(want.filter((r) => r[2] === "programmed").length).toBe(2);
    expect(((await page.evaluate<string[][]>(ROWS)) ?? []).sort()).toEqual(want);
    const counters = await page.evaluate<string[]>(
      `[...document.querySelectorAll("#counters tr[data-counter]")].map((tr) => tr.dataset.counter)`,
    );
    for (const c of ["pod_encap_ok", "encap_ok", "decap_redirect_peer", "decap_drop_non_member"])
      expect(counters).toContain(c);

    // live: the script polled, put a rate on the encap counter (the pod's veth encapsulates
    // its traffic) and points on the chart
    await until(
      async () =>
        (await page.evaluate<boolean>(`document.documentElement.dataset.live === "on" &&
          Number(document.querySelector('#counters tr[data-counter="pod_encap_ok"] .rate').textContent) > 0 &&
          Number(document.getElementById("chart").dataset.points) >= 2`)) || undefined,
      "the page to show a live encap rate and a chart",
      20_000,
    );
    // doctor's first report (run by the agent in the background) with each peer's round trip
    await until(
      async () =>
        (await page.evaluate<number>(
          `[...document.querySelectorAll("#leases tr[data-subnet]")].filter((tr) => / ms$/.test(tr.lastElementChild.textContent)).length`,
        )) === 2 || undefined,
      "doctor's probe RTT for both peers on the page",
      // the agent's doctor runs at start (maybe before it knew both peers), then every 60 s
      90_000,
    );
    expect(
      await page.evaluate<number>(`document.querySelectorAll("#doctor [data-check]").length`),
    ).toBeGreaterThan(10);
    // a picture with some history in it
    await until(
      async () =>
        (await page.evaluate<number>(`Number(document.getElementById("chart").dataset.points)`)) >= 12,
      "a chart with 12 points",
      60_000,
    );
    const dir = join(ROOT, ".test-report");
    mkdirSync(dir, { recursive: true });
    await page.screenshot(join(dir, "live-page.png"));
    await page.send("Emulation.setDeviceMetricsOverride", {
      width: 1400,
      height: 1000,
      deviceScaleFactor: 1,
      mobile: false,
    });
  }, 200_000);

  test("hostile registry content is shown as text, never run", async () => {
    const reg = SqliteRegistry.open({ path: cl.registry.slice("sqlite:".length), log: silentLogger });
    try {
      const rec = await reg.create(
        HOSTILE_KEY,
        JSON.stringify({ PublicIP: "198.18.9.9", BackendType: HOSTILE }),
        60 * 60_000,
      );
      expect(rec).not.toBeNull();
    } finally {
      await reg.close();
    }
    const cell = `document.querySelector('#leases tr[data-subnet="198.19.250.0/24"] td:nth-child(3)')`;
    await until(
      async () => (await page.evaluate<boolean>(`${cell} !== null`)) || undefined,
      "the hostile lease on the page",
      10_000,
    );
    expect(await page.evaluate<string>(`${cell}.textContent`)).toBe(HOSTILE);
    expect(await page.evaluate<number>(`${cell}.children.length`)).toBe(0);
    expect(await page.evaluate<number>(`document.querySelectorAll("img").length`)).toBe(0);
    expect(await page.evaluate<number>(`document.scripts.length`)).toBe(1);
    expect(await page.evaluate<unknown>(`window.__pwned ?? null`)).toBeNull();
  }, 30_000);

  test("a deleted lease leaves the page within 5 s, without a reload", async () => {
    await page.evaluate(`window.__sameDocument = "yes"`);
    const r = await tartan(["leases", "delete", HOSTILE_KEY, cl.registryFlag]);
    expect(r.code).toBe(0);
    await until(
      async () =>
        (await page.evaluate<boolean>(
          `!document.querySelector('#leases tr[data-subnet="198.19.250.0/24"]')`,
        )) || undefined,
      "the deleted lease to leave the page",
      5_000,
    );
    // a node's own lease: stop its agent (the lease stays in the registry), then delete it
    const n3 = cl.nodes[2]!;
    await cl.lab.stop(n3.agent);
    const subnet = (await page.evaluate<string[][]>(ROWS)).find((row) => row[1] === n3.ip)![0]!;
    const d = await tartan(["leases", "delete", subnet, cl.registryFlag]);
    expect(d.code).toBe(0);
    await until(
      async () => (await page.evaluate<string[][]>(ROWS)).every((row) => row[0] !== subnet) || undefined,
      `${subnet} (node ${n3.ip}) to leave the page`,
      5_000,
    );
    expect((await page.evaluate<string[][]>(ROWS)).length).toBe(2);
    expect(await page.evaluate<string>(`window.__sameDocument`)).toBe("yes");
    expect(await page.evaluate<string>(`document.querySelector("#leases .count").textContent`)).toStartWith(
      "2 leases",
    );
  }, 30_000);

  test("without JavaScript: curl and a browser with scripts off list every lease", async () => {
    const s = await status(cl.lab, n1.ns);
    const want = s.leases.map((l) => [l.subnet, l.publicIp]).sort();
    const r = await cl.lab.http(n1.ns, "/");
    expect(r.status).toBe(200);
    const curlRows = [
      ...r.body.matchAll(/<tr data-subnet="([^"]+)"[^>]*>.*?data-col="node-ip">([^<]+)</g),
    ].map((m) => [m[1]!, m[2]!]);
    expect(curlRows.sort()).toEqual(want);
    const plain = await browser.newPage({ javascript: false });
    await plain.goto(URL);
    expect((await plain.evaluate<string[][]>(ROWS)).map((row) => [row[0]!, row[1]!]).sort()).toEqual(want);
    expect(await plain.evaluate<unknown>(`document.documentElement.dataset.live ?? null`)).toBeNull();
    expect(await plain.evaluate<string>(`document.getElementById("live").textContent`)).toContain(
      "static page",
    );
  }, 30_000);

  test("live /metrics passes promtool and carries every metric the dashboard and the alerts query", async () => {
    const r = await cl.lab.http(n1.ns, "/metrics");
    expect(r.status).toBe(200);
    const check = promtool(["check", "metrics"], r.body);
    expect(check.out).toBe("");
    expect(check.code).toBe(0);
    const live = declaredFamilies(r.body);
    // the doctor's findings are there with samples, not only declared
    expect(r.body).toMatch(/^tartan_doctor_check\{check="peers",status="(ok|warning|problem)"\} 1$/m);
    expect(r.body).toMatch(/^tartan_lease_expiry_timestamp_seconds \d+/m);
    for (const p of dashboardPanels())
      for (const t of p.targets ?? [])
        for (const m of metricNames(t.expr))
          expect({ panel: p.title, metric: m, live: live.has(m) }).toEqual({
            panel: p.title,
            metric: m,
            live: true,
          });
    for (const a of alertRules())
      for (const m of metricNames(a.expr))
        expect({ rule: a.alert, metric: m, live: live.has(m) }).toEqual({
          rule: a.alert,
          metric: m,
          live: true,
        });
    for (const f of ruleFiles()) expect(promtool(["check", "rules", f]).code).toBe(0);
    const dir = mkdtempSync(join(tmpdir(), "tartan-grafana-"));
    try {
      expect(checkDashboardQueries(dir).code).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(traffic.proc.exitCode).toBeNull();
  }, 30_000);
});
