/** `tartan status`: asks a running agent's endpoint for /v1/status and prints it as tables. */
import * as v from "valibot";
import { DEFAULT_HTTP } from "../config/options.ts";
import type { AgentStatus } from "../status/status.ts";
import { ValidationError } from "../validation.ts";
import { type FlagDef, parseFlags } from "./flags.ts";
import { flagsHelp } from "./help.ts";
import { parseHostPort, validateFlags } from "./options.ts";
import { table } from "./table.ts";

export const STATUS_FLAGS: FlagDef[] = [
  { name: "http", kind: "string", default: DEFAULT_HTTP, help: "HOST:PORT of the agent's status endpoint" },
  { name: "json", kind: "boolean", help: "print the raw JSON" },
  { name: "help", short: "h", kind: "boolean", help: "show this help" },
];

const Schema = v.object({
  http: v.optional(
    v.pipe(
      v.string(),
      v.check((s) => parseHostPort(s) !== null, "--http must be HOST:PORT"),
    ),
    DEFAULT_HTTP,
  ),
  json: v.optional(v.boolean(), false),
  help: v.optional(v.boolean(), false),
});

export function statusHelp(): string {
  return flagsHelp(
    "tartan status [--http=HOST:PORT] [--json]",
    "Show a running agent's lease, peers, health, readiness and datapath counters.",
    STATUS_FLAGS,
  );
}

export function formatStatus(s: AgentStatus): string {
  const out: string[] = [];
  out.push(
    `node        ${s.node}  (tartan ${s.version}, backend ${s.backend ?? "-"}, up since ${s.startedAt})`,
  );
  out.push(`network     ${s.network ?? "-"}`);
  out.push(
    `lease       ${s.lease ? `${s.lease.subnet} via ${s.lease.publicIp}, expires ${s.lease.expiresAt ?? "never"}, renews ${s.lease.renewAt ?? "never"}` : "none"}`,
  );
  out.push(
    `registry    ${s.registry.description}: ${s.registry.state}${s.registry.lastError ? ` (${s.registry.lastError})` : ""}, revision ${s.registry.revision}`,
  );
  out.push(`subnet file ${s.subnetFile.path}${s.subnetFile.written ? "" : " (not written)"}`);
  out.push(`health      ${s.health.ok ? "ok" : `FAIL: ${s.health.reasons.join("; ")}`}`);
  out.push(`ready       ${s.ready.ok ? "yes" : `no: ${s.ready.reasons.join("; ")}`}`);
  out.push("");
  out.push(
    table(
      ["SUBNET", "PUBLIC IP", "BACKEND", "VTEP MAC", "PROGRAMMED", "EXPIRES"],
      s.leases.map((l) => [
        l.subnet + (l.own ? " (this node)" : ""),
        l.publicIp,
        l.backendType,
        l.vtepMac ?? "-",
        l.programmed ? "yes" : "no",
        l.expiresAt ?? "never",
      ]),
    ).trimEnd(),
  );
  const names = Object.keys(s.counters).sort();
  if (names.length > 0) {
    out.push("");
    out.push(
      table(
        ["DATAPATH COUNTER", "PACKETS"],
        names.map((n) => [n, String(s.counters[n])]),
      ).trimEnd(),
    );
  }
  return `${out.join("\n")}\n`;
}

export async function runStatus(argv: readonly string[], out: (s: string) => void): Promise<number> {
  const { flags, positionals } = parseFlags("status", argv, STATUS_FLAGS, {});
  if (positionals.length)
    throw new ValidationError(`tartan status takes no arguments (got ${JSON.stringify(positionals[0])})`);
  const o = validateFlags(Schema, flags);
  if (o.help) {
    out(`${statusHelp()}\n`);
    return 0;
  }
  const hp = parseHostPort(o.http)!;
  const url = `http://${hp.host === "0.0.0.0" ? "127.0.0.1" : hp.host}:${hp.port}/v1/status`;
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  } catch (e) {
    throw new Error(
      `no agent answers at ${url} (${(e as Error).message}); is tartan agent running with --http=${o.http}?`,
    );
  }
  const s = (await res.json()) as AgentStatus;
  out(o.json ? `${JSON.stringify(s, null, 2)}\n` : formatStatus(s));
  return s.health.ok ? 0 : 1;
}
