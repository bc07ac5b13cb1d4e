/**
 * Help text, generated from the command table (commands.ts) and the flag declarations
 * (flag-def.ts), so it cannot drift from what the parser accepts: `tartan help`, a
 * command's help, and the README's flag tables (checked by a unit test).
 */
import { envName, type FlagDef, type FlagSet } from "./flag-def.ts";

/** What help needs to know of a command; commands.ts has the full entry. */
export interface CommandHelp {
  readonly name: string;
  /** One line for `tartan help`. */
  readonly summary: string;
  /** The usage line(s), without "Usage: ". */
  readonly usage: string;
  /** What the command does, a short paragraph. */
  readonly about: string;
  readonly flags: FlagSet;
  /** Examples and notes after the flags. */
  readonly notes?: readonly string[];
}

export function mainHelp(commands: readonly CommandHelp[]): string {
  const w = Math.max(...commands.map((c) => c.name.length));
  return [
    "tartan — overlay network agent with an eBPF VXLAN datapath; a drop-in for flanneld.",
    "",
    "Usage: tartan COMMAND [flags]",
    "",
    "Commands:",
    ...commands.map((c) => `  ${c.name.padEnd(w)}  ${c.summary}`),
    "",
    "Flags take one or two dashes (-etcd-endpoints=… as flanneld, or --etcd-endpoints …);",
    "flanneld's flags can also come from FLANNELD_* environment variables (the command line wins).",
    "",
    "Quick start on one host:",
    "  tartan config set net-conf.json --registry=sqlite:/var/lib/tartan/registry.db",
    "  tartan agent --backend=ebpf-vxlan --iface=eth0",
    "  curl -s 127.0.0.1:8471/readyz",
    "",
    "Run `tartan help COMMAND` (or `tartan COMMAND --help`) for a command's flags.",
  ].join("\n");
}

function flagName(name: string, d: FlagDef): string {
  const value = d.kind === "boolean" ? "" : d.kind === "list" ? "=VALUE (repeatable)" : "=VALUE";
  // a one-letter full name is glog's style: -v=2
  return `${d.short ? `-${d.short}, ` : ""}${name.length === 1 ? "-" : "--"}${name}${value}`;
}

/** flanneld flags Tartan refuses or ignores: listed by name only, to keep help short. */
function compatLines(flags: FlagSet): string[] {
  const named = (pick: (d: FlagDef) => boolean) =>
    Object.entries(flags)
      .filter(([, d]) => pick(d))
      .map(([n]) => `--${n}`);
  const refused = named((d) => d.refuse !== undefined);
  const ignored = named((d) => d.ignore !== undefined);
  const out: string[] = [];
  if (refused.length)
    out.push(
      "",
      "flanneld flags Tartan does not implement (each refused with what to do instead):",
      ...wrap(refused),
    );
  if (ignored.length)
    out.push("", "flanneld flags accepted and ignored (logged at start):", ...wrap(ignored));
  return out;
}

function wrap(words: string[], width = 96): string[] {
  const lines: string[] = [];
  let line = " ";
  for (const w of words) {
    if (line.length + w.length + 1 > width) {
      lines.push(line);
      line = " ";
    }
    line += ` ${w}`;
  }
  lines.push(line);
  return lines;
}

export function commandHelp(c: CommandHelp): string {
  const shown = Object.entries(c.flags).filter(([, d]) => !d.refuse && !d.ignore);
  const rows = shown.map(([name, d]) => {
    const notes: string[] = [];
    if (d.default !== undefined) notes.push(`default ${d.default}`);
    if (d.env) notes.push(`env ${envName(name)}`);
    return { name: flagName(name, d), help: d.help + (notes.length ? ` [${notes.join("; ")}]` : "") };
  });
  const w = Math.min(44, Math.max(0, ...rows.map((r) => r.name.length)));
  return [
    `Usage: ${c.usage}`,
    "",
    c.about,
    ...(rows.length ? ["", "Flags:"] : []),
    ...rows.map((r) =>
      r.name.length > w ? `  ${r.name}\n  ${"".padEnd(w)}  ${r.help}` : `  ${r.name.padEnd(w)}  ${r.help}`,
    ),
    ...compatLines(c.flags),
    ...(c.notes?.length ? ["", ...c.notes] : []),
  ].join("\n");
}

// ---- the README's flag tables ---------------------------------------------------------

const cell = (s: string) => s.replaceAll("|", "\\|");

/** A markdown table of flags: name, default, meaning (README.md embeds these). */
export function markdownFlagTable(flags: FlagSet): string {
  const rows = Object.entries(flags).map(([name, d]) => {
    const repeat = d.kind === "list" ? " (repeatable)" : "";
    const shown = d.default ?? (d.kind === "boolean" ? "false" : undefined);
    const def = shown === undefined ? "—" : /^[\w./:<>-]+$/.test(shown) ? `\`${shown}\`` : shown;
    return `| \`--${name}\`${repeat} | ${cell(def)} | ${cell(d.help)} |`;
  });
  return ["| flag | default | meaning |", "|---|---|---|", ...rows].join("\n");
}

/** A markdown table of the flanneld flags Tartan refuses or ignores; flags with one reason share a row. */
export function markdownCompatTable(flags: FlagSet): string {
  const byReason = new Map<string, string[]>();
  for (const [name, d] of Object.entries(flags)) {
    const reason = d.refuse ? `refused: ${d.refuse}` : `ignored: ${d.ignore ?? ""}`;
    byReason.set(reason, [...(byReason.get(reason) ?? []), `\`--${name}\``]);
  }
  const rows = [...byReason].map(([reason, names]) => `| ${names.join(", ")} | ${cell(reason)} |`);
  return ["| flanneld flag | in Tartan |", "|---|---|", ...rows].join("\n");
}
