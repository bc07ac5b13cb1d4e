/**
 * Argv parsing, flanneld-style, over the declarations in flag-def.ts: `--flag=v`,
 * `--flag v`, Go's single-dash `-flag=v` (also glog's one-letter `-v=2`), `--x=true|false`
 * and `--no-x` for switches, repeatable list flags, and FLANNELD_* environment variables
 * (the command line wins). Produces raw values; flag-def.ts validates them.
 */
import { parseArgs } from "node:util";
import { closestName, ValidationError } from "../validation.ts";
import { envName, type FlagSet, type RawFlags } from "./flag-def.ts";

/**
 * Go's flag package takes `-name`; parseArgs takes `--name`. One-letter flags stay
 * single-dash (they are mk-docker-opts.sh's letters), unless `defs` declares that letter as
 * a flag's full name (glog's `-v`).
 */
export function normalizeArgv(argv: readonly string[], defs: FlagSet = {}): string[] {
  const out: string[] = [];
  let rest = false;
  for (const a of argv) {
    const name = /^-([a-zA-Z][a-zA-Z0-9_-]*)(=.*)?$/s.exec(a)?.[1];
    if (rest || a === "--") {
      rest = true;
      out.push(a);
    } else if (name !== undefined && (name.length > 1 || Object.hasOwn(defs, name))) out.push(`-${a}`);
    else out.push(a);
  }
  return out;
}

export interface ParsedArgs {
  readonly flags: RawFlags;
  readonly positionals: string[];
  /** Flags that came from FLANNELD_* variables, for logging and for naming them in errors. */
  readonly fromEnv: string[];
}

/** Go accepts -flag=true|false for switches; parseArgs wants --flag / --no-flag. */
function switchesSpelledOut(
  argv: readonly string[],
  defs: FlagSet,
): { args: string[]; negated: Set<string> } {
  const isSwitch = (n: string) => Object.hasOwn(defs, n) && defs[n]!.kind === "boolean";
  const negated = new Set<string>();
  const args: string[] = [];
  for (const a of argv) {
    const eq = /^--([a-zA-Z0-9_-]+)=(true|false)$/.exec(a);
    const no = /^--no-([a-zA-Z0-9_-]+)$/.exec(a);
    if (eq && isSwitch(eq[1]!)) {
      if (eq[2] === "true") args.push(`--${eq[1]}`);
      else negated.add(eq[1]!);
    } else if (no && isSwitch(no[1]!) && !Object.hasOwn(defs, `no-${no[1]}`)) negated.add(no[1]!);
    else args.push(a);
  }
  return { args, negated };
}

/** FLANNELD_* variables for the flags that have one and were not given on the command line. */
function fromEnvironment(defs: FlagSet, flags: RawFlags, env: Record<string, string | undefined>): string[] {
  const used: string[] = [];
  for (const [name, d] of Object.entries(defs)) {
    if (!d.env || flags[name] !== undefined) continue;
    const val = env[envName(name)];
    if (val === undefined || val === "") continue;
    used.push(name);
    if (d.kind === "boolean") {
      if (!/^(true|false|1|0)$/i.test(val))
        throw new ValidationError(`${envName(name)}=${val}: must be true or false`);
      flags[name] = /^(true|1)$/i.test(val);
    } else if (d.kind === "list")
      flags[name] = val
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);
    else flags[name] = val;
  }
  return used;
}

/**
 * Parses argv against `defs`; unknown flags and missing values are ValidationErrors
 * naming the flag and what is allowed.
 */
export function parseFlags(
  command: string,
  argv: readonly string[],
  defs: FlagSet,
  env: Record<string, string | undefined> = process.env,
): ParsedArgs {
  const options: Record<string, { type: "string" | "boolean"; multiple?: boolean; short?: string }> = {};
  for (const [name, d] of Object.entries(defs))
    options[name] = {
      type: d.kind === "boolean" ? "boolean" : "string",
      ...(d.kind === "list" ? { multiple: true } : {}),
      ...(d.short ? { short: d.short } : {}),
    };
  const { args, negated } = switchesSpelledOut(normalizeArgv(argv, defs), defs);
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new ValidationError(explainParseError(command, (e as Error).message, defs));
  }
  const flags: RawFlags = { ...(parsed.values as RawFlags) };
  for (const n of negated) if (flags[n] === undefined) flags[n] = false;
  const fromEnv = fromEnvironment(defs, flags, env);
  return { flags, positionals: parsed.positionals, fromEnv };
}

function explainParseError(command: string, msg: string, defs: FlagSet): string {
  const unknown = /Unknown option '(-{1,2})([^']+)'/.exec(msg);
  if (unknown) {
    const name = unknown[2]!;
    const best = closestName(name, Object.keys(defs), 3);
    const hint = best ? `; did you mean --${best}?` : "";
    return `unknown flag ${unknown[1]}${name} for "tartan ${command}"${hint} (see tartan ${command} --help)`;
  }
  const missing = /Option '(?:-\w, )?--([^ ]+) <value>' argument missing/.exec(msg);
  if (missing) return `flag --${missing[1]} needs a value (see tartan ${command} --help)`;
  const boolVal = /Option '(?:-\w, )?--([^ ]+)' does not take an argument/.exec(msg);
  if (boolVal) return `flag --${boolVal[1]} is a switch: give it alone, or as --${boolVal[1]}=true|false`;
  return `${msg} (see tartan ${command} --help)`;
}
