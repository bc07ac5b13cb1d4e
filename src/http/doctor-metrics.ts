/**
 * Doctor's latest report as Prometheus metrics: every check's status, when it ran, and
 * the peer probes summarised with bounded cardinality — counts, the median and worst
 * round trip, and per-peer series only for the few slowest and the few unanswered
 * peers (docs/observability.md says why not one series per peer).
 */
import type { DoctorReport } from "../doctor/report.ts";
import { type PromSample, promFamily } from "../status/status.ts";
import { peerProbes } from "./peer-probes.ts";

/** Per-peer RTT series: the slowest answered peers only. */
export const SLOWEST_PEERS = 5;
/** Per-peer unreachable series: at most this many unanswered peers. */
export const UNANSWERED_PEERS = 10;

const STATUSES = ["ok", "warning", "problem"] as const;

/** Doctor's ms with three decimals as seconds, without float noise (0.123 ms → 0.000123). */
const seconds = (ms: number) => Math.round(ms * 1000) / 1e6;

/** Rendered once per report: every scrape until the next doctor run gets the same text. */
const rendered = new WeakMap<DoctorReport, string>();

export function formatDoctorMetrics(r: DoctorReport | null): string {
  if (!r) return render(null);
  const cached = rendered.get(r);
  if (cached !== undefined) return cached;
  const text = render(r);
  rendered.set(r, text);
  return text;
}

function render(r: DoctorReport | null): string {
  const probes = [...peerProbes(r).values()];
  const answered = probes.filter((p) => p.rttMs !== null).sort((a, b) => b.rttMs! - a.rttMs!);
  const unanswered = probes.filter((p) => p.rttMs === null).sort((a, b) => a.subnet.localeCompare(b.subnet));
  const rtts = answered.map((p) => seconds(p.rttMs!)).sort((a, b) => a - b);
  const one = (v: number | null): PromSample[] => (r === null || v === null ? [] : [{ value: v }]);
  const lines = [
    ...promFamily(
      "tartan_doctor_check",
      "gauge",
      "1 for each doctor check's current status (ok, warning or problem), 0 for the others; check ids are the headings of docs/doctor.md.",
      (r?.checks ?? []).flatMap((c) =>
        STATUSES.map((status) => ({ labels: { check: c.id, status }, value: c.status === status ? 1 : 0 })),
      ),
    ),
    ...promFamily(
      "tartan_doctor_last_run_timestamp_seconds",
      "gauge",
      "When the latest doctor report's facts were gathered (Unix time).",
      one(r ? Date.parse(r.at) / 1000 : null),
    ),
    ...promFamily(
      "tartan_doctor_peers",
      "gauge",
      "Peers probed through the overlay by the latest doctor run, by whether they answered.",
      r === null
        ? []
        : [
            { labels: { state: "answered" }, value: answered.length },
            { labels: { state: "unanswered" }, value: unanswered.length },
          ],
    ),
    ...promFamily(
      "tartan_doctor_peer_rtt_median_seconds",
      "gauge",
      "Median round trip to the peers that answered the latest doctor probe.",
      one(rtts.length ? rtts[Math.floor((rtts.length - 1) / 2)]! : null),
    ),
    ...promFamily(
      "tartan_doctor_peer_rtt_max_seconds",
      "gauge",
      "Slowest round trip among the peers that answered the latest doctor probe.",
      one(rtts.length ? rtts[rtts.length - 1]! : null),
    ),
    ...promFamily(
      "tartan_doctor_peer_rtt_seconds",
      "gauge",
      `Round trip to each of the ${SLOWEST_PEERS} slowest peers of the latest doctor probe.`,
      answered.slice(0, SLOWEST_PEERS).map((p) => ({
        labels: { peer: p.publicIp, subnet: p.subnet },
        value: seconds(p.rttMs!),
      })),
    ),
    ...promFamily(
      "tartan_doctor_peer_unreachable",
      "gauge",
      `1 for each peer (at most ${UNANSWERED_PEERS}) that did not answer the latest doctor probe.`,
      unanswered.slice(0, UNANSWERED_PEERS).map((p) => ({
        labels: { peer: p.publicIp, subnet: p.subnet },
        value: 1,
      })),
    ),
  ];
  return `${lines.join("\n")}\n`;
}
