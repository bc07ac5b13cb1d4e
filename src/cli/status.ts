/** `tartan status`: asks a running agent's endpoint for /v1/status and prints it as tables. */
import { parseCidr } from "../config/cidr.ts";
import type { HostPort } from "../config/options.ts";
import type { AgentStatus } from "../status/status.ts";
import { type Command, noArguments } from "./command.ts";
import { booleanFlag, type FlagSet, validateFlags, withHelp } from "./flag-def.ts";
import { HELP_FLAG, TARTAN_AGENT_FLAGS } from "./options.ts";
import { table } from "./table.ts";

export const STATUS_FLAGS = {
  http: withHelp(TARTAN_AGENT_FLAGS.http, "HOST:PORT of the agent's status endpoint (its --http)"),
  json: booleanFlag({ help: "print the raw JSON document (GET /v1/status)" }),
  verbose: booleanFlag({ help: "list every datapath counter, zeros included" }),
  ...HELP_FLAG,
} satisfies FlagSet;

/** The status as tables; counters at zero only with `verbose` (a healthy node has many). */
export function formatStatus(s: AgentStatus, verbose = false): string {
  const out: string[] = [];
  out.push(
    `node        ${s.node}  (tartan ${s.version}, backend ${s.backend ?? "-"}, up since ${s.startedAt})`,
  );
  out.push(`network     ${s.network ?? "-"}${s.network6 ? ` and ${s.network6}` : ""}`);
  const l6 = s.lease?.subnet6
    ? ` and ${s.lease.subnet6}${s.lease.publicIpv6 ? ` via ${s.lease.publicIpv6}` : ""}`
    : "";
  out.push(
    `lease       ${s.lease ? `${s.lease.subnet} via ${s.lease.publicIp}${l6}, expires ${s.lease.expiresAt ?? "never"}, renews ${s.lease.renewAt ?? "never"}` : "none"}`,
  );
  out.push(
    `registry    ${s.registry.description}: ${s.registry.state}${s.registry.lastError ? ` (${s.registry.lastError})` : ""}, revision ${s.registry.revision}`,
  );
  out.push(`subnet file ${s.subnetFile.path}${s.subnetFile.written ? "" : " (not written)"}`);
  out.push(`health      ${s.health.ok ? "ok" : `FAIL: ${s.health.reasons.join("; ")}`}`);
  out.push(`ready       ${s.ready.ok ? "yes" : `no: ${s.ready.reasons.join("; ")}`}`);
  out.push("");
  // the IPv6 columns only where some lease has an IPv6 side: IPv4-only tables stay as they were
  const dual = s.leases.some((l) => l.subnet6 !== undefined || l.publicIpv6 !== undefined);
  out.push(
    table(
      [
        "SUBNET",
        ...(dual ? ["IPV6 SUBNET"] : []),
        "PUBLIC IP",
        ...(dual ? ["PUBLIC IPV6"] : []),
        "BACKEND",
        "VTEP MAC",
        "PROGRAMMED",
        "EXPIRES",
      ],
      [...s.leases]
        .sort(ownThenBySubnet)
        .map((l) => [
          l.subnet + (l.own ? " (this node)" : ""),
          ...(dual ? [l.subnet6 ?? "-"] : []),
          l.publicIp,
          ...(dual ? [l.publicIpv6 ?? "-"] : []),
          l.backendType,
          l.vtepMac ?? "-",
          l.programmed ? "yes" : "no",
          l.expiresAt ?? "never",
        ]),
    ).trimEnd(),
  );
  const names = Object.keys(s.counters).sort();
  const shown = verbose ? names : names.filter((n) => s.counters[n] !== 0);
  if (shown.length > 0) {
    out.push("");
    out.push(
      table(
        ["DATAPATH COUNTER", "PACKETS"],
        shown.map((n) => [n, String(s.counters[n])]),
      ).trimEnd(),
    );
  }
  const hidden = names.length - shown.length;
  if (hidden > 0) out.push(`(${hidden} datapath counter(s) at zero not shown; --verbose lists them)`);
  return `${out.join("\n")}\n`;
}

/** GET /v1/status; no answer is one line saying which address was asked and how to give another. */
async function fetchStatus(hp: HostPort, given: string): Promise<AgentStatus> {
  const base = `http://${hp.host === "0.0.0.0" ? "127.0.0.1" : hp.host}:${hp.port}`;
  const hint = "is `tartan agent` running? if it listens elsewhere, give --http=HOST:PORT";
  let res: Response;
  try {
    res = await fetch(`${base}/v1/status`, { signal: AbortSignal.timeout(5000) });
  } catch (e) {
    const timedOut = (e as Error).name === "TimeoutError";
    throw new Error(`no agent answers at ${base}${timedOut ? " within 5 s" : ""} (${hint})`);
  }
  const body = await res.text();
  try {
    const s = JSON.parse(body) as AgentStatus;
    if (res.ok && typeof s === "object" && s !== null && "health" in s) return s;
  } catch {}
  throw new Error(
    `${base}/v1/status answered ${res.status} with no agent status: is --http=${given} a Tartan agent?`,
  );
}

export const statusCommand: Command = {
  name: "status",
  summary: "show a running agent's state (lease, peers, health, datapath counters)",
  usage: "tartan status [--http=HOST:PORT] [--json] [--verbose]",
  about: [
    "Show a running agent's lease, peers, health, readiness and datapath counters (the ones",
    "that are not zero; --verbose lists all). Exit code 0 when the agent is healthy, else 1.",
  ].join("\n"),
  flags: STATUS_FLAGS,
  async run(p, io) {
    noArguments("status", p.positionals);
    const o = validateFlags(STATUS_FLAGS, p.flags);
    const s = await fetchStatus(
      o.http,
      (p.flags.http as string | undefined) ?? TARTAN_AGENT_FLAGS.http.default!,
    );
    io.out(o.json ? `${JSON.stringify(s, null, 2)}\n` : formatStatus(s, o.verbose));
    return s.health.ok ? 0 : 1;
  },
};

/** This node's lease first, then by address (not as text: .9 before .10). */
function ownThenBySubnet(a: AgentStatus["leases"][number], b: AgentStatus["leases"][number]): number {
  if (a.own !== b.own) return a.own ? -1 : 1;
  const ca = parseCidr(a.subnet, false);
  const cb = parseCidr(b.subnet, false);
  if (ca && cb) return ca.ip - cb.ip || ca.len - cb.len;
  return a.subnet < b.subnet ? -1 : a.subnet > b.subnet ? 1 : 0;
}
