/**
 * The live page's HTML, server-rendered from the page model: complete without
 * JavaScript (every fact is in the markup; the ring is inline SVG), and marked up for
 * live.client.js, which re-fetches the page and swaps the `data-live` regions, computes
 * counter rates from `data-value`/`data-now`, and draws the encap/decap chart.
 */
import { type Html, html } from "./html.ts";
import { type CounterRow, DEFAULT_LIMIT, type LeaseRow, type PageModel, type PageQuery } from "./model.ts";
import { ringSvg } from "./ring.ts";

export interface AssetUrls {
  readonly script: string;
  readonly style: string;
}

const num = (n: number) => n.toLocaleString("en-US");

/** "3d 4h", "2h 5m", "4m 10s", "12s". */
export function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

function when(iso: string | null, now: number, never: string): Html {
  if (iso === null) return html`<span class="muted">${never}</span>`;
  const t = Date.parse(iso);
  const rel = t >= now ? `in ${duration(t - now)}` : `${duration(now - t)} ago`;
  return html`<time datetime="${iso}" title="${iso}">${rel}</time>`;
}

function href(q: PageQuery, over: Partial<PageQuery>): string {
  const m = { ...q, ...over };
  const p = new URLSearchParams();
  if (m.q) p.set("q", m.q);
  if (m.show !== "all") p.set("show", m.show);
  if (m.limit !== DEFAULT_LIMIT) p.set("limit", String(m.limit));
  if (m.page !== 1) p.set("page", String(m.page));
  const s = p.toString();
  return s ? `/?${s}` : "/";
}

function badge(ok: boolean, yes: string, no: string): Html {
  return html`<span class="badge ${ok ? "good" : "bad"}">${ok ? yes : no}</span>`;
}

function reasons(list: readonly string[]): Html | null {
  return list.length ? html`<ul class="reasons">${list.map((r) => html`<li>${r}</li>`)}</ul>` : null;
}

function summary(m: PageModel): Html {
  const s = m.status;
  const reg = s.registry.state;
  return html`<div id="summary" data-live class="summary"><h1>${s.node}</h1>${badge(s.health.ok, "healthy", "unhealthy")}${badge(
    s.ready.ok,
    "ready",
    "not ready",
  )}<span class="badge ${reg === "ok" ? "good" : reg === "degraded" ? "bad" : "warn"}">registry ${reg}</span>${
    m.doctor
      ? html`<span class="badge ${m.doctor.summary.problem ? "bad" : m.doctor.summary.warning ? "warn" : "good"}">doctor: ${
          m.doctor.summary.problem
        } problem(s), ${m.doctor.summary.warning} warning(s)</span>`
      : null
  }<span class="facts">${s.backend ?? "no backend"} · ${s.network ?? "no network config"}${s.network6 ? ` + ${s.network6}` : ""} · tartan ${s.version} · up ${duration(
    m.now - Date.parse(s.startedAt),
  )}</span></div>`;
}

function nodeCard(m: PageModel): Html {
  const s = m.status;
  return html`<div id="node" data-live><dl class="kv"><dt>Lease</dt><dd>${
    s.lease
      ? html`<b>${s.lease.subnet}</b> for node ${s.lease.publicIp}${
          s.lease.subnet6 ? html`<br><b>${s.lease.subnet6}</b> for node ${s.lease.publicIpv6 ?? "–"}` : null
        }<br>expires ${when(s.lease.expiresAt, m.now, "never (reservation)")}${
          s.lease.renewAt ? html`, renewal ${when(s.lease.renewAt, m.now, "")}` : null
        }`
      : html`<span class="bad-text">no lease held</span>`
  }</dd><dt>Health</dt><dd>${badge(s.health.ok, "healthy", "unhealthy")}${reasons(s.health.reasons)}</dd><dt>Readiness</dt><dd>${badge(
    s.ready.ok,
    "ready",
    "not ready",
  )}${reasons(s.ready.reasons)}</dd><dt>Registry</dt><dd><span class="${s.registry.state === "ok" ? "" : "bad-text"}">${s.registry.state}</span> · ${
    s.registry.description
  } · revision ${num(s.registry.revision)}${
    s.registry.lastError ? html`<br><span class="bad-text">${s.registry.lastError}</span>` : null
  }</dd><dt>subnet.env</dt><dd>${s.subnetFile.path} ${s.subnetFile.written ? "written" : html`<span class="bad-text">not written</span>`}</dd><dt>Agent</dt><dd>tartan ${s.version}, started ${when(
    s.startedAt,
    m.now,
    "",
  )}</dd></dl></div>`;
}

function counterRow(c: CounterRow): Html {
  return html`<tr data-counter="${c.name}" data-value="${c.value}"${c.counter ? html` data-rate` : null}${
    c.series ? html` data-series="${c.series}"` : null
  } class="${[c.drop ? "drop" : "", c.drop && c.value > 0 ? "seen" : "", c.value === 0 ? "zero" : ""].filter(Boolean).join(" ")}"><td><code>${c.name}</code></td><td class="n">${num(
    c.value,
  )}</td><td class="n rate">${c.counter ? "–" : "gauge"}</td></tr>`;
}

/** Counters grouped by what they count (encap_…, decap_…, vxlan_…, the rest), one table each. */
function counters(m: PageModel): Html {
  const groups = new Map<string, CounterRow[]>();
  for (const c of m.counters) {
    const g = /^(encap|decap|vxlan)_/.exec(c.name)?.[1] ?? "other";
    groups.set(g, [...(groups.get(g) ?? []), c]);
  }
  return html`<div id="counters" data-live data-now="${m.now}">${
    m.counters.length
      ? html`<div class="counter-groups">${[...groups].map(
          ([g, rows]) =>
            html`<table class="counters"><thead><tr><th>${g === "other" ? "gauges" : g}</th><th class="n">total</th><th class="n">per second</th></tr></thead><tbody>${rows.map(
              counterRow,
            )}</tbody></table>`,
        )}</div>`
      : html`<p class="muted">The ${m.status.backend ?? "current"} backend reports no datapath counters.</p>`
  }</div>`;
}

function leaseRow(l: LeaseRow, now: number): Html {
  const cls = l.own ? "own" : l.probe?.rttMs === null ? "bad" : !l.programmed ? "warn" : "";
  return html`<tr data-subnet="${l.subnet}" class="${cls}"><td><b>${l.subnet}</b>${
    l.own ? html` <span class="tag">this node</span>` : null
  }${l.subnet6 ? html`<br><span class="v6">${l.subnet6}</span>` : null}</td><td data-col="node-ip">${l.publicIp}${
    l.publicIpv6 ? html`<br><span class="v6">${l.publicIpv6}</span>` : null
  }</td><td>${l.backendType || html`<span class="muted">none</span>`}${
    l.vni !== null ? html` <span class="muted">VNI ${l.vni}</span>` : null
  }</td><td><code>${l.vtepMac ?? "–"}</code></td><td>${when(l.expiresAt, now, "never")}</td><td data-col="programmed">${
    l.own
      ? html`<span class="st own">local</span>`
      : l.programmed
        ? html`<span class="st ok">programmed</span>`
        : html`<span class="st warn">not programmed</span>`
  }</td><td class="n">${
    l.probe
      ? l.probe.rttMs === null
        ? html`<span class="st bad">unreachable</span>`
        : `${l.probe.rttMs.toFixed(3)} ms`
      : html`<span class="muted">–</span>`
  }</td></tr>`;
}

function pager(m: PageModel): Html | null {
  if (m.pages <= 1) return null;
  const q = m.query;
  return html`<nav class="pager">${q.page > 1 ? html`<a href="${href(q, { page: 1 })}">« first</a><a href="${href(q, { page: q.page - 1 })}">‹ previous</a>` : null}<span>page ${num(
    q.page,
  )} of ${num(m.pages)}</span>${
    q.page < m.pages
      ? html`<a href="${href(q, { page: q.page + 1 })}">next ›</a><a href="${href(q, { page: m.pages })}">last »</a>`
      : null
  }</nav>`;
}

function leases(m: PageModel): Html {
  const q = m.query;
  const first = m.matched ? (q.page - 1) * q.limit + 1 : 0;
  const last = (q.page - 1) * q.limit + m.rows.length;
  const filtered = q.q || q.show !== "all";
  return html`<div id="leases" data-live><p class="count" data-count="${m.all.length}">${
    filtered
      ? html`${num(m.matched)} of ${num(m.all.length)} leases match`
      : html`${num(m.all.length)} leases`
  }${m.matched ? html`, showing ${num(first)}–${num(last)}` : null}${
    m.unprogrammed
      ? html` · <a class="bad-text" href="${href(q, { show: "unprogrammed", page: 1 })}">${num(m.unprogrammed)} not programmed</a>`
      : null
  }${
    m.unreachable
      ? html` · <a class="bad-text" href="${href(q, { show: "unreachable", page: 1 })}">${num(m.unreachable)} unreachable</a>`
      : null
  }</p><table class="leases"><thead><tr><th>subnet</th><th>node IP</th><th>backend</th><th>VTEP MAC</th><th>expires</th><th>here</th><th class="n">doctor probe</th></tr></thead><tbody>${m.rows.map(
    (l) => leaseRow(l, m.now),
  )}</tbody></table>${m.rows.length ? null : html`<p class="muted">No lease matches.</p>`}${pager(m)}</div>`;
}

function filterForm(q: PageQuery): Html {
  const opt = (v: string, label: string) =>
    html`<option value="${v}"${q.show === v ? html` selected` : null}>${label}</option>`;
  return html`<form class="filter" method="get" action="/"><input type="search" name="q" value="${q.q}" placeholder="filter: subnet, node IP, MAC, backend" maxlength="100"><select name="show">${opt(
    "all",
    "all leases",
  )}${opt("unprogrammed", "not programmed")}${opt("unreachable", "unreachable")}</select>${
    q.limit !== DEFAULT_LIMIT ? html`<input type="hidden" name="limit" value="${q.limit}">` : null
  }<button type="submit">show</button></form>`;
}

function doctor(m: PageModel): Html {
  const r = m.doctor;
  if (!r)
    return html`<div id="doctor" data-live><p class="muted">No doctor report yet: the agent runs the checks shortly after it starts, then every minute.</p></div>`;
  const order = { problem: 0, warning: 1, ok: 2 } as const;
  const bad = r.checks.filter((c) => c.status !== "ok").sort((a, b) => order[a.status] - order[b.status]);
  const ok = r.checks.filter((c) => c.status === "ok");
  return html`<div id="doctor" data-live><p>Report of ${when(r.at, m.now, "")}: <b>${r.summary.problem}</b> problem(s), <b>${r.summary.warning}</b> warning(s), ${r.summary.ok} ok (kernel ${r.kernel}).</p>${bad.map(
    (c) =>
      html`<div class="check ${c.status}" data-check="${c.id}"><span class="st ${c.status === "problem" ? "bad" : "warn"}">${c.status}</span> <code>${c.id}</code> ${c.finding}<details><summary>why and how to fix</summary>${
        c.details?.length ? html`<ul>${c.details.map((d) => html`<li>${d}</li>`)}</ul>` : null
      }<p><b>why:</b> ${c.why}</p>${c.fix ? html`<p><b>fix:</b> ${c.fix}${c.fixable ? " (tartan doctor --fix does it)" : ""}</p>` : null}<p class="muted">docs/doctor.md#${c.id}</p></details></div>`,
  )}<details class="oks"><summary>${ok.length} checks ok</summary><ul>${ok.map(
    (c) =>
      html`<li data-check="${c.id}"><span class="st ok">ok</span> <code>${c.id}</code> ${c.finding}</li>`,
  )}</ul></details></div>`;
}

export function renderPage(m: PageModel, assets: AssetUrls): string {
  const s = m.status;
  const links = {
    lease: (l: LeaseRow) => href(m.query, { q: l.subnet, show: "all", page: 1 }),
    index: (i: number) => href(m.query, { q: "", show: "all", page: Math.floor(i / m.query.limit) + 1 }),
  };
  const doc = html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${s.node} · tartan</title><link rel="stylesheet" href="${assets.style}"><script src="${assets.script}" defer></script><noscript><meta http-equiv="refresh" content="30"></noscript></head>
<body><header class="top"><span class="brand">tartan</span>${summary(m)}<span id="live" class="live off">static page · reload for news</span></header>
<main><section class="card cluster"><h2>Cluster</h2><div id="ring" data-live>${ringSvg(m.all, s.node, links)}<p class="legend"><span><i class="key own"></i>this node</span> <span><i class="key ok"></i>programmed</span> <span><i class="key unprogrammed"></i>not programmed</span> <span><i class="key unreachable"></i>unreachable</span></p></div></section>
<section class="card node"><h2>This node</h2>${nodeCard(m)}</section>
<section class="card datapath"><h2>Datapath</h2><figure id="chart" class="chart"><noscript><p class="muted">The packet-rate chart needs JavaScript; the totals are below.</p></noscript></figure>${counters(m)}</section>
<section class="card doctor"><h2>Doctor</h2>${doctor(m)}</section>
<section class="card leases-card"><h2>Leases</h2>${filterForm(m.query)}${leases(m)}</section></main>
<footer>Read-only. The same facts as JSON: <a href="/v1/status">/v1/status</a> · <a href="/v1/leases">/v1/leases</a> · <a href="/v1/doctor">/v1/doctor</a> · <a href="/metrics">/metrics</a></footer>
</body></html>
`;
  return doc.value;
}
