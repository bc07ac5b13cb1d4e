/**
 * The agent's HTTP endpoint (Hono): the live page, health and readiness probes,
 * effective config, leases, status and Prometheus metrics. Read-only: other methods get
 * 405, unknown paths 404. Built from its dependencies so tests drive it with app.request().
 */
import { Hono } from "hono";
import type { DoctorReport } from "../doctor/report.ts";
import { type AgentStatus, formatMetrics } from "../status/status.ts";
import { ValidationError } from "../validation.ts";
import { formatDoctorMetrics } from "./doctor-metrics.ts";
import { DoctorView } from "./doctor-view.ts";
import { slicedJson } from "./json-slices.ts";
import { ASSETS, SCRIPT, STYLE } from "./page/assets.ts";
import { buildPage, parsePageQuery } from "./page/model.ts";
import { renderPage } from "./page/render.ts";

export interface AppDeps {
  /**
   * A status snapshot; `leases: false` leaves the per-lease list out (counts stay),
   * `counters: false` the datapath counters (probes need neither).
   */
  status(opts?: { leases?: boolean; counters?: boolean }): Promise<AgentStatus>;
  /** The effective configuration with secrets redacted. */
  config(): Record<string, unknown>;
  /** The latest `tartan doctor` report (runs the checks if none has finished yet). */
  doctor?(): Promise<DoctorReport>;
}

const ROUTES = [
  "/",
  ...ASSETS.map((a) => a.path),
  "/healthz",
  "/readyz",
  "/v1/config",
  "/v1/leases",
  "/v1/status",
  "/v1/doctor",
  "/metrics",
];

/** The page runs only its own script and style and talks only to this endpoint. */
const PAGE_HEADERS = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

export function createApp(deps: AppDeps): Hono {
  const app = new Hono();
  const doctor = new DoctorView(deps.doctor);
  app.get("/", async (c) => {
    let query: ReturnType<typeof parsePageQuery>;
    try {
      query = parsePageQuery(c.req.query());
    } catch (e) {
      if (!(e instanceof ValidationError)) throw e;
      return c.text(`${e.message}\n`, 400, { "x-content-type-options": "nosniff" });
    }
    const [s, report] = await Promise.all([deps.status(), doctor.current()]);
    const page = renderPage(await buildPage(s, report, query, Date.now()), {
      script: SCRIPT.url,
      style: STYLE.url,
    });
    return c.html(page, 200, PAGE_HEADERS);
  });
  for (const a of ASSETS)
    app.get(a.path, (c) =>
      c.body(a.body, 200, {
        "content-type": a.type,
        "cache-control": "public, max-age=31536000, immutable",
        "x-content-type-options": "nosniff",
      }),
    );
  app.get("/healthz", async (c) => {
    const s = await deps.status({ leases: false, counters: false });
    const body = {
      status: s.health.ok ? "ok" : "unhealthy",
      reasons: s.health.reasons,
      registry: s.registry.state,
    };
    return c.json(body, s.health.ok ? 200 : 503);
  });
  app.get("/readyz", async (c) => {
    const s = await deps.status({ leases: false, counters: false });
    return c.json(
      { status: s.ready.ok ? "ready" : "not ready", reasons: s.ready.reasons },
      s.ready.ok ? 200 : 503,
    );
  });
  app.get("/v1/config", (c) => c.json(deps.config()));
  // every lease: written a slice at a time (see json-slices.ts)
  app.get("/v1/leases", async () => {
    const s = await deps.status();
    return slicedJson({ revision: s.registry.revision, leases: [] }, "leases", s.leases);
  });
  app.get("/v1/status", async () => {
    const s = await deps.status();
    return slicedJson({ ...s, leases: [] }, "leases", s.leases);
  });
  app.get("/v1/doctor", async (c) => {
    if (!deps.doctor) return c.json({ error: "doctor is not available in this agent" }, 404);
    return c.json(await deps.doctor());
  });
  app.get("/metrics", async (c) => {
    const [s, report] = await Promise.all([deps.status({ leases: false }), doctor.current()]);
    return c.text(formatMetrics(s) + formatDoctorMetrics(report), 200, {
      "content-type": "text/plain; version=0.0.4; charset=utf-8",
    });
  });
  for (const path of ROUTES) {
    app.all(path, (c) =>
      c.json({ error: `method ${c.req.method} not allowed on ${path}; this endpoint is read-only` }, 405, {
        allow: "GET, HEAD",
      }),
    );
  }
  app.notFound((c) => c.json({ error: `no such endpoint ${c.req.path}`, endpoints: ROUTES }, 404));
  app.onError((err, c) => c.json({ error: err.message }, 500));
  return app;
}
