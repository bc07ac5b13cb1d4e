/**
 * Flag definitions and argv parsing, flanneld-style: `--flag=v`, `--flag v`, Go's
 * single-dash `-flag=v`, repeatable list flags, and FLANNELD_* environment variables
 * (the command line wins). Produces raw strings; `options.ts` validates them.
 */
import { parseArgs } from "node:util";
import { ValidationError } from "../validation.ts";

export type FlagKind = "string" | "boolean" | "list";

export interface FlagDef {
  readonly name: string;
  readonly kind: FlagKind;
  readonly help: string;
  /** Shown in --help; the schema applies it. */
  readonly default?: string;
  /** One-letter alias (docker-opts keeps mk-docker-opts.sh's letters). */
  readonly short?: string;
  /** Read from FLANNELD_<NAME> (flanneld's flags only). */
  readonly env?: boolean;
  /** Never echoed back (passwords). */
  readonly secret?: boolean;
}

export type RawFlags = Record<string, string | boolean | string[] | undefined>;

export function envName(flag: string): string {
  return `FLANNELD_${flag.toUpperCase().replaceAll("-", "_")}`;
}

/** Go's flag package takes `-name`; parseArgs takes `--name`. One-letter flags stay single-dash. */
export function normalizeArgv(argv: readonly string[]): string[] {
  const out: string[] = [];
  let rest = false;
  for (const a of argv) {
    if (rest || a === "--") {
      rest = true;
      out.push(a);
    } else if (/^-[a-zA-Z][a-zA-Z0-9-]+(=.*)?$/s.test(a)) out.push(`-${a}`);
    else out.push(a);
  }
  return out;
}

/** Levenshtein distance, for "did you mean". */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      d[i]![j] = Math.min(
        d[i - 1]![j]! + 1,
        d[i]![j - 1]! + 1,
        d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
  return d[a.length]![b.length]!;
}

export interface ParsedArgs {
  readonly flags: RawFlags;
  readonly positionals: string[];
  /** Flags that came from FLANNELD_* variables, for logging. */
  readonly fromEnv: string[];
}

/**
 * Parses argv against `defs`; unknown flags and missing values are ValidationErrors
 * naming the flag and what is allowed.
 */
export function parseFlags(
  command: string,
  argv: readonly string[],
  defs: readonly FlagDef[],
  env: Record<string, string | undefined> = process.env,
): ParsedArgs {
  const options: Record<string, { type: "string" | "boolean"; multiple?: boolean; short?: string }> = {};
  for (const d of defs)
    options[d.name] = {
      type: d.kind === "boolean" ? "boolean" : "string",
      ...(d.kind === "list" ? { multiple: true } : {}),
      ...(d.short ? { short: d.short } : {}),
    };
  const norm = normalizeArgv(argv).map((a) => {
    // Go accepts -flag=true|false for booleans; parseArgs does not.
    const m = /^--([a-z0-9-]+)=(true|false)$/.exec(a);
    if (m && defs.find((d) => d.name === m[1])?.kind === "boolean")
      return m[2] === "true" ? `--${m[1]}` : `--no-${m[1]}`;
    return a;
  });
  const negated = new Set<string>();
  const filtered = norm.filter((a) => {
    const m = /^--no-([a-z0-9-]+)$/.exec(a);
    if (m && defs.find((d) => d.name === m[1])?.kind === "boolean") {
      negated.add(m[1]!);
      return false;
    }
    return true;
  });
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: filtered, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new ValidationError(explainParseError(command, (e as Error).message, defs));
  }
  const flags: RawFlags = { ...(parsed.values as RawFlags) };
  for (const n of negated) if (flags[n] === undefined) flags[n] = false;
  const fromEnv: string[] = [];
  for (const d of defs) {
    if (!d.env || flags[d.name] !== undefined) continue;
    const val = env[envName(d.name)];
    if (val === undefined || val === "") continue;
    fromEnv.push(d.name);
    if (d.kind === "boolean") {
      if (!/^(true|false|1|0)$/i.test(val))
        throw new ValidationError(`${envName(d.name)}=${val}: must be true or false`);
      flags[d.name] = /^(true|1)$/i.test(val);
    } else if (d.kind === "list")
      flags[d.name] = val
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);
    else flags[d.name] = val;
  }
  return { flags, positionals: parsed.positionals, fromEnv };
}

function explainParseError(command: string, msg: string, defs: readonly FlagDef[]): string {
  const unknown = /Unknown option '(-{1,2})([^']+)'/.exec(msg);
  if (unknown) {
    const name = unknown[2]!;
    const best = defs.map((d) => ({ d, dist: distance(name, d.name) })).sort((a, b) => a.dist - b.dist)[0];
    const hint = best && best.dist <= 3 ? `; did you mean --${best.d.name}?` : "";
    return `unknown flag ${unknown[1]}${name} for "tartan ${command}"${hint} (see tartan ${command} --help)`;
  }
  const missing = /Option '(?:-\w, )?--([^ ]+) <value>' argument missing/.exec(msg);
  if (missing) return `flag --${missing[1]} needs a value (see tartan ${command} --help)`;
  const boolVal = /Option '(?:-\w, )?--([^ ]+)' does not take an argument/.exec(msg);
  if (boolVal) return `flag --${boolVal[1]} is a switch: give it alone, or as --${boolVal[1]}=true|false`;
  return `${msg} (see tartan ${command} --help)`;
}
