/**
 * What the live page shows, as data: the request's table query (validated), every lease
 * with doctor's latest probe sorted by subnet, the one page of them the table shows, and
 * the datapath counters classified for the chart. Pure; `render.ts` turns it into HTML.
 * Only one page of leases becomes markup, so 10,000 leases cost a sort, not a 10,000-row table.
 */
import * as v from "valibot";
import type { DoctorReport } from "../../doctor/report.ts";
import { SLICE, yieldToLoop } from "../../slices.ts";
import { type AgentStatus, isVerdictCounter, type LeaseView } from "../../status/status.ts";
import { issuesText, ValidationError } from "../../validation.ts";
import { type PeerProbe, peerProbes } from "../peer-probes.ts";

export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 1000;
export const SHOW = ["all", "unprogrammed", "unreachable"] as const;

const whole = (name: string, min: number, max: number) =>
  v.pipe(
    v.string(),
    v.regex(/^[0-9]{1,7}$/, `${name} must be a whole number`),
    v.transform(Number),
    v.minValue(min, `${name} must be at least ${min}`),
    v.maxValue(max, `${name} must be at most ${max}`),
  );

const QuerySchema = v.object({
  q: v.optional(v.pipe(v.string(), v.maxLength(100, "q must be at most 100 characters"), v.trim()), ""),
  show: v.optional(v.picklist(SHOW, `show must be one of ${SHOW.join(", ")}`), "all"),
  page: v.optional(whole("page", 1, 1_000_000), "1"),
  limit: v.optional(whole("limit", 1, MAX_LIMIT), String(DEFAULT_LIMIT)),
});

export type PageQuery = v.InferOutput<typeof QuerySchema>;

/** The table's query from the URL; a bad value throws a ValidationError naming it. */
export function parsePageQuery(params: Record<string, string>): PageQuery {
  const known = Object.fromEntries(Object.entries(params).filter(([k]) => k in QuerySchema.entries));
  const r = v.safeParse(QuerySchema, known);
  if (!r.success) throw new ValidationError(`query: ${issuesText(r.issues)}`);
  return r.output;
}

export interface LeaseRow extends LeaseView {
  /** Doctor's latest probe of this peer; null when not probed (our own lease, or no report yet). */
  readonly probe: PeerProbe | null;
  /** Position in the whole sorted list (the ring and pagination use it). */
  readonly index: number;
}

export type Series = "encap" | "decap";

export interface CounterRow {
  readonly name: string;
  readonly value: number;
  /** Verdict counters only grow (a rate makes sense); anything else is a gauge. */
  readonly counter: boolean;
  /** Packets this counter adds to the chart's encap or decap line. */
  readonly series: Series | null;
  readonly drop: boolean;
}

export interface PageModel {
  readonly status: AgentStatus;
  readonly doctor: DoctorReport | null;
  readonly query: PageQuery;
  /** Every lease, sorted by subnet. */
  readonly all: readonly LeaseRow[];
  /** How many match the query's filter. */
  readonly matched: number;
  /** The page of matching leases the table shows. */
  readonly rows: readonly LeaseRow[];
  readonly pages: number;
  readonly unprogrammed: number;
  readonly unreachable: number;
  readonly counters: readonly CounterRow[];
  /** ms since the epoch the page was built at (rates are computed against it). */
  readonly now: number;
}

/** Which chart line a verdict counter feeds: packets sent into or taken out of the tunnel. */
export function seriesOf(name: string): Series | null {
  if (/^(pod_|host_)?encap_ok/.test(name) || name === "vxlan_tx_packets") return "encap";
  if (name === "decap_redirect_peer" || name === "decap_stack" || name === "vxlan_rx_packets") return "decap";
  return null;
}

/**
 * "a.b.c.d/len" as a number that sorts by address, then prefix length (unparseable last).
 * A hand-rolled parse: at 10,000 leases on every poll, parseCidr was most of the page's cost.
 */
export function subnetOrder(subnet: string): number {
  let ip = 0;
  let part = 0;
  let dots = 0;
  let slash = -1;
  for (let i = 0; i < subnet.length; i++) {
    const c = subnet.charCodeAt(i);
    if (c >= 48 && c <= 57) part = part * 10 + (c - 48);
    else if (c === 46 && dots < 3 && slash < 0) {
      ip = ip * 256 + part;
      part = 0;
      dots++;
    } else if (c === 47 && dots === 3 && slash < 0) {
      ip = ip * 256 + part;
      part = 0;
      slash = i;
    } else return Number.MAX_SAFE_INTEGER;
  }
  return dots === 3 && slash > 0 && part <= 32 ? ip * 64 + part : Number.MAX_SAFE_INTEGER;
}

export function isUnprogrammed(l: LeaseView): boolean {
  return !l.own && !l.programmed;
}

function matches(l: LeaseRow, q: PageQuery): boolean {
  if (q.show === "unprogrammed" && !isUnprogrammed(l)) return false;
  if (q.show === "unreachable" && l.probe?.rttMs !== null) return false;
  if (!q.q) return true;
  const needle = q.q.toLowerCase();
  return [l.subnet, l.subnet6 ?? "", l.publicIp, l.publicIpv6 ?? "", l.backendType, l.vtepMac ?? ""].some(
    (f) => f.toLowerCase().includes(needle),
  );
}

/**
 * The page's model. Async: the per-lease passes (sort keys, rows, the filter, the counts)
 * run a slice at a time with yields between, so 50,000 leases never hold up a probe.
 */
export async function buildPage(
  status: AgentStatus,
  doctor: DoctorReport | null,
  query: PageQuery,
  now: number,
): Promise<PageModel> {
  const probes = peerProbes(doctor);
  const leases = status.leases;
  const order = await sortedOrder(leases);
  const all: LeaseRow[] = new Array(leases.length);
  const filtered = query.q !== "" || query.show !== "all";
  const matching: LeaseRow[] = filtered ? [] : all;
  let unprogrammed = 0;
  let unreachable = 0;
  for (let index = 0; index < order.length; index++) {
    const l = leases[order[index]!]!;
    const row: LeaseRow = { ...l, probe: l.own ? null : (probes.get(l.subnet) ?? null), index };
    all[index] = row;
    if (isUnprogrammed(row)) unprogrammed++;
    if (row.probe?.rttMs === null) unreachable++;
    if (filtered && matches(row, query)) matching.push(row);
    if (index % SLICE === SLICE - 1) await yieldToLoop();
  }
  const pages = Math.max(1, Math.ceil(matching.length / query.limit));
  const page = Math.min(query.page, pages);
  const names = Object.keys(status.counters).sort();
  return {
    status,
    doctor,
    query: { ...query, page },
    all,
    matched: matching.length,
    rows: matching.slice((page - 1) * query.limit, page * query.limit),
    pages,
    unprogrammed,
    unreachable,
    counters: names.map((name) => ({
      name,
      value: status.counters[name]!,
      counter: isVerdictCounter(name),
      series: seriesOf(name),
      drop: /drop/.test(name),
    })),
    now,
  };
}

/**
 * Indices of `leases` in subnet order. Subnets are distinct, so their sort keys are: the
 * keys sort natively (a typed array, no comparator calls) and map back to their leases;
 * should two keys ever be equal (unparseable subnets), a comparator sort decides.
 */
async function sortedOrder(leases: readonly LeaseView[]): Promise<Uint32Array> {
  const keys = new Float64Array(leases.length);
  const at = new Map<number, number>();
  for (let i = 0; i < leases.length; i++) {
    keys[i] = subnetOrder(leases[i]!.subnet);
    at.set(keys[i]!, i);
    if (i % SLICE === SLICE - 1) await yieldToLoop();
  }
  const order = new Uint32Array(leases.length);
  if (at.size !== leases.length) {
    for (let i = 0; i < order.length; i++) order[i] = i;
    return order.sort((a, b) => keys[a]! - keys[b]! || a - b);
  }
  const sorted = keys.slice().sort();
  for (let i = 0; i < sorted.length; i++) order[i] = at.get(sorted[i]!)!;
  return order;
}
