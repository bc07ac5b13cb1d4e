// The live page's script (embedded in the binary, served as /assets/live.js). The page is
// complete without it; with it, the page re-fetches itself every POLL_MS and swaps the
// regions marked data-live (so the server's escaping is the only way text reaches the
// DOM), turns counter totals into rates per second, and draws encap/decap packets per
// second over the last minutes. No framework, no outside requests.
(() => {
  const POLL_MS = 2000;
  const TIMEOUT_MS = 5000;
  const WINDOW_MS = 5 * 60_000;
  const SVG = "http://www.w3.org/2000/svg";
  const liveEl = document.getElementById("live");
  const chartEl = document.getElementById("chart");
  /** @type {{t: number, encap: number, decap: number, drop: number}[]} */
  const history = [];
  let prev = sample(document);
  let lastOk = Date.now();

  function sample(root) {
    const box = root.querySelector("#counters");
    const values = new Map();
    for (const tr of root.querySelectorAll("#counters tr[data-counter]"))
      values.set(tr.dataset.counter, Number(tr.dataset.value));
    return { t: Number(box?.dataset.now ?? Date.now()), values };
  }

  function fmtRate(r) {
    if (r >= 1e6) return `${(r / 1e6).toFixed(1)}M`;
    if (r >= 1e4) return `${(r / 1e3).toFixed(1)}k`;
    if (r >= 100) return r.toFixed(0);
    return r.toFixed(1);
  }

  /** Rates since the previous sample into the (freshly swapped) counter rows, and a chart point. */
  function applyRates(cur) {
    const dt = (cur.t - prev.t) / 1000;
    if (!(dt > 0)) return;
    const point = { t: cur.t, encap: 0, decap: 0, drop: 0 };
    for (const tr of document.querySelectorAll("#counters tr[data-rate]")) {
      const name = tr.dataset.counter;
      const now = cur.values.get(name);
      const before = prev.values.get(name);
      if (now === undefined || before === undefined) continue;
      // a restarted agent starts its totals again: no negative rates
      const rate = Math.max(0, (now - before) / dt);
      tr.querySelector(".rate").textContent = fmtRate(rate);
      const drop = tr.classList.contains("drop");
      tr.classList.toggle("hot", drop && rate > 0);
      if (tr.dataset.series) point[tr.dataset.series] += rate;
      if (drop) point.drop += rate;
    }
    history.push(point);
    while (history.length && history[0].t < cur.t - WINDOW_MS) history.shift();
    drawChart();
  }

  function el(name, attrs, text) {
    const e = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  /**
   * Encap above the axis and decap mirrored below it (they are often equal, so they would
   * hide each other on one side); drops in red on both sides' scale, drawn only once seen.
   */
  function drawChart() {
    if (!chartEl) return;
    const W = Math.max(320, chartEl.clientWidth || 720);
    const H = 190;
    const L = 56;
    const B = 18;
    const mid = (H - B) / 2 + 2;
    const half = mid - 8;
    const end = history.length ? history[history.length - 1].t : Date.now();
    const start = end - WINDOW_MS;
    const top = niceMax(Math.max(1, ...history.map((p) => Math.max(p.encap, p.decap, p.drop))));
    const x = (t) => L + ((t - start) / WINDOW_MS) * (W - L - 4);
    const up = (v) => mid - (v / top) * half;
    const down = (v) => mid + (v / top) * half;
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "chart-svg", role: "img" });
    svg.setAttribute("aria-label", "encap and decap packets per second over the last 5 minutes");
    for (const [yy, label] of [
      [up(top), `${fmtRate(top)} ↑`],
      [mid, "0"],
      [down(top), `${fmtRate(top)} ↓`],
    ]) {
      svg.append(el("line", { class: yy === mid ? "grid zero" : "grid", x1: L, x2: W - 4, y1: yy, y2: yy }));
      svg.append(el("text", { class: "axis", x: L - 6, y: yy + 4, "text-anchor": "end" }, label));
    }
    svg.append(el("text", { class: "axis", x: L, y: H - 3 }, "5 min ago"));
    svg.append(el("text", { class: "axis", x: W - 4, y: H - 3, "text-anchor": "end" }, "now"));
    const area = (s, y) => {
      if (!history.length) return;
      const pts = history.map((p) => `${x(p.t).toFixed(1)},${y(p[s]).toFixed(1)}`);
      const x0 = x(history[0].t).toFixed(1);
      const x1 = x(history[history.length - 1].t).toFixed(1);
      svg.append(el("polygon", { class: `fill ${s}`, points: `${x0},${mid} ${pts.join(" ")} ${x1},${mid}` }));
      svg.append(el("polyline", { class: `series ${s}`, points: pts.join(" ") }));
    };
    area("encap", up);
    area("decap", down);
    if (history.some((p) => p.drop > 0))
      svg.append(
        el("polyline", {
          class: "series drop",
          points: history.map((p) => `${x(p.t).toFixed(1)},${up(p.drop).toFixed(1)}`).join(" "),
        }),
      );
    const last = history[history.length - 1];
    const legend = document.createElement("figcaption");
    for (const [s, label] of [
      ["encap", "↑ encap packets"],
      ["decap", "↓ decap packets"],
      ["drop", "drops"],
    ]) {
      const k = document.createElement("span");
      k.className = `key-line ${s}`;
      k.textContent = `${label} ${last ? fmtRate(last[s]) : "–"}/s`;
      legend.append(k);
    }
    chartEl.replaceChildren(svg, legend);
    chartEl.dataset.points = String(history.length);
  }

  function niceMax(v) {
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  /** Swaps every data-live region that changed, keeping which <details> the reader opened or closed. */
  function swap(doc) {
    for (const next of doc.querySelectorAll("[data-live][id]")) {
      const cur = document.getElementById(next.id);
      if (!cur || cur.innerHTML === next.innerHTML) continue;
      const key = (d) => d.closest("[data-check]")?.dataset.check ?? d.className;
      const open = new Map([...cur.querySelectorAll("details")].map((d) => [key(d), d.open]));
      const fresh = document.importNode(next, true);
      for (const d of fresh.querySelectorAll("details")) if (open.has(key(d))) d.open = open.get(key(d));
      cur.replaceWith(fresh);
    }
  }

  function setLive(text, bad) {
    if (!liveEl) return;
    liveEl.textContent = text;
    liveEl.className = `live ${bad ? "bad" : "on"}`;
  }

  async function poll() {
    if (document.visibilityState === "hidden") return;
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
    try {
      const r = await fetch(location.href, { cache: "no-store", credentials: "omit", signal: ctl.signal });
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      const doc = new DOMParser().parseFromString(await r.text(), "text/html");
      const cur = sample(doc);
      swap(doc);
      applyRates(cur);
      prev = cur;
      lastOk = Date.now();
      document.documentElement.dataset.live = "on";
      setLive("live · updated just now", false);
    } catch (e) {
      setLive(
        `agent not answering (${e.name === "AbortError" ? "timeout" : e.message}) · last update ${Math.round((Date.now() - lastOk) / 1000)} s ago`,
        true,
      );
    } finally {
      clearTimeout(timer);
    }
  }

  drawChart();
  addEventListener("resize", drawChart);
  setLive("live · connecting", false);
  setInterval(poll, POLL_MS);
  setTimeout(poll, 1000);
})();
