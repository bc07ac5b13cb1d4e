/**
 * The cluster as this node sees it, as an inline SVG ring: every node's lease in subnet
 * order around a circle, this node highlighted, a line from it to each peer coloured by
 * what this node knows (programmed, not programmed, not answering doctor's probe). Past
 * RING_DOTS nodes the ring aggregates: arcs of consecutive leases, each coloured by its
 * worst member, so 10,000 nodes are still RING_DOTS shapes. Every shape links to its
 * leases in the table, so the picture works without JavaScript.
 */
import { type Html, html } from "./html.ts";
import { isUnprogrammed, type LeaseRow } from "./model.ts";

/** Up to this many nodes get a dot each; beyond it, arcs. */
export const RING_DOTS = 64;
/** Up to this many nodes carry their node IP as a label. */
const LABELS = 16;

/** The ring's box: a circle of radius R around (C, C), with room beside it for node IPs. */
const SIZE = 360;
const C = SIZE / 2;
const R = 130;
const SIDE = 64;

type State = "own" | "ok" | "unprogrammed" | "unreachable";

function stateOf(l: LeaseRow): State {
  if (l.own) return "own";
  if (l.probe && l.probe.rttMs === null) return "unreachable";
  if (isUnprogrammed(l)) return "unprogrammed";
  return "ok";
}

const STATE_TEXT: Record<State, string> = {
  own: "this node",
  ok: "programmed",
  unprogrammed: "not programmed",
  unreachable: "unreachable (no answer to doctor's probe)",
};

const polar = (angle: number, r: number) => [C + r * Math.cos(angle), C + r * Math.sin(angle)] as const;
const angleOf = (i: number, n: number) => -Math.PI / 2 + (2 * Math.PI * i) / n;
const f1 = (x: number) => x.toFixed(1);

export interface RingLinks {
  /** Link to the table filtered to one lease. */
  lease(l: LeaseRow): string;
  /** Link to the table page holding the lease at this index of the sorted list. */
  index(i: number): string;
}

function dots(all: readonly LeaseRow[], links: RingLinks): Html {
  const n = all.length;
  const own = all.find((l) => l.own);
  const dotR = n <= 12 ? 13 : Math.max(4, Math.min(12, ((2 * Math.PI * R) / n) * 0.32));
  const at = all.map((_, i) => polar(angleOf(i, n), R));
  const ownAt = own ? at[own.index]! : null;
  const edges = ownAt
    ? all
        .filter((l) => !l.own)
        .map((l) => {
          const [x, y] = at[l.index]!;
          return html`<line class="edge st-${stateOf(l)}" x1="${f1(ownAt[0])}" y1="${f1(ownAt[1])}" x2="${f1(x)}" y2="${f1(y)}"/>`;
        })
    : [];
  const nodes = all.map((l, i) => {
    const [x, y] = at[i]!;
    const st = stateOf(l);
    const rtt = l.probe ? (l.probe.rttMs === null ? ", no answer" : `, ${l.probe.rttMs.toFixed(3)} ms`) : "";
    const label =
      n <= LABELS
        ? (() => {
            const a = angleOf(i, n);
            const [lx, ly] = polar(a, R + dotR + 8);
            const anchor = Math.abs(Math.cos(a)) < 0.3 ? "middle" : Math.cos(a) > 0 ? "start" : "end";
            const dy = Math.sin(a) > 0.3 ? 10 : Math.sin(a) < -0.3 ? -2 : 4;
            return html`<text class="label${l.own ? " own" : ""}" x="${f1(lx)}" y="${f1(ly + dy)}" text-anchor="${anchor}">${l.publicIp}</text>`;
          })()
        : null;
    return html`<a href="${links.lease(l)}" class="node" data-subnet="${l.subnet}"><title>${l.subnet} · node ${l.publicIp} · ${STATE_TEXT[st]}${rtt}</title>${
      l.own ? html`<circle class="halo" cx="${f1(x)}" cy="${f1(y)}" r="${f1(dotR + 6)}"/>` : null
    }<circle class="dot st-${st}" cx="${f1(x)}" cy="${f1(y)}" r="${f1(dotR)}"/>${label}</a>`;
  });
  return html`${edges}${nodes}`;
}

function arcs(all: readonly LeaseRow[], links: RingLinks): Html {
  const n = all.length;
  const parts: Html[] = [];
  let ownMark: Html | null = null;
  for (let b = 0; b < RING_DOTS; b++) {
    const from = Math.floor((b * n) / RING_DOTS);
    const to = Math.floor(((b + 1) * n) / RING_DOTS);
    const seg = all.slice(from, to);
    const states = seg.map(stateOf);
    const unreachable = states.filter((s) => s === "unreachable").length;
    const unprogrammed = states.filter((s) => s === "unprogrammed").length;
    const worst: State = unreachable ? "unreachable" : unprogrammed ? "unprogrammed" : "ok";
    const gap = 0.012;
    const [x0, y0] = polar(angleOf(b, RING_DOTS) + gap, R);
    const [x1, y1] = polar(angleOf(b + 1, RING_DOTS) - gap, R);
    parts.push(
      html`<a href="${links.index(from)}" class="node"><title>${seg[0]!.subnet} … ${seg[seg.length - 1]!.subnet}: ${seg.length} nodes, ${seg.length - unprogrammed} programmed${
        unreachable ? `, ${unreachable} not answering` : ""
      }</title><path class="arc st-${worst}" d="M${f1(x0)} ${f1(y0)} A${R} ${R} 0 0 1 ${f1(x1)} ${f1(y1)}"/></a>`,
    );
    const own = seg.find((l) => l.own);
    if (own) {
      const a = angleOf(b + (own.index - from + 0.5) / seg.length, RING_DOTS);
      const [x, y] = polar(a, R);
      const [lx, ly] = polar(a, R - 26);
      ownMark = html`<a href="${links.lease(own)}" class="node"><title>${own.subnet} · node ${own.publicIp} · this node</title><circle class="halo" cx="${f1(x)}" cy="${f1(y)}" r="13"/><circle class="dot st-own" cx="${f1(x)}" cy="${f1(y)}" r="8"/><text class="label own" x="${f1(lx)}" y="${f1(ly + 4)}" text-anchor="middle">${own.publicIp}</text></a>`;
    }
  }
  return html`${parts}${ownMark}`;
}

export function ringSvg(all: readonly LeaseRow[], node: string, links: RingLinks): Html {
  const n = all.length;
  const programmed = all.filter((l) => !l.own && l.programmed).length;
  const peers = all.filter((l) => !l.own).length;
  const body = n === 0 ? null : n <= RING_DOTS ? dots(all, links) : arcs(all, links);
  return html`<svg class="ring" viewBox="${-SIDE} 0 ${SIZE + 2 * SIDE} ${SIZE}" role="img" aria-label="${`${n} nodes, ${programmed} of ${peers} peers programmed`}"><circle class="track" cx="${C}" cy="${C}" r="${R}"/>${body}<text class="center big" x="${C}" y="${C - 6}" text-anchor="middle">${n.toLocaleString("en-US")} ${n === 1 ? "node" : "nodes"}</text><text class="center" x="${C}" y="${C + 14}" text-anchor="middle">${programmed.toLocaleString("en-US")}/${peers.toLocaleString("en-US")} peers programmed</text><text class="center small" x="${C}" y="${C + 32}" text-anchor="middle">seen from ${node.length > 24 ? `${node.slice(0, 23)}…` : node}</text>${
    n > RING_DOTS
      ? html`<text class="center small" x="${C}" y="${C + 48}" text-anchor="middle">${RING_DOTS} arcs of ~${Math.round(n / RING_DOTS)} nodes</text>`
      : null
  }</svg>`;
}
