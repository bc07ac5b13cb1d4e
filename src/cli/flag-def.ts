/**
 * A command-line flag, declared once: its kind, the schema that turns the raw value into a
 * typed one (the default applied), the default as help shows it, whether a FLANNELD_*
 * variable may set it, and its help line. The parser (flags.ts), the validation below, the
 * help (help.ts) and the README's flag tables are all derived from these declarations.
 */
import * as v from "valibot";
import { ValidationError } from "../validation.ts";

export type FlagKind = "string" | "boolean" | "list";

/** The raw values parseArgs produces: a string, a switch, or a repeated string. */
export type RawValue = string | boolean | string[] | undefined;
export type RawFlags = Record<string, RawValue>;

export interface FlagDef<Out = unknown> {
  readonly kind: FlagKind;
  readonly help: string;
  /** The default as help shows it. The schema applies it, unless it is computed elsewhere. */
  readonly default?: string;
  /** One-letter alias (docker-opts keeps mk-docker-opts.sh's letters). */
  readonly short?: string;
  /** Also read from FLANNELD_<NAME>: set on flanneld's own flags. */
  readonly env?: boolean;
  /** Never echoed back (passwords). */
  readonly secret?: boolean;
  /** Raw value (undefined when not given) → typed value; its messages say what is allowed. */
  readonly schema: v.GenericSchema<unknown, Out>;
  /** A flanneld flag Tartan knows but does not implement: given (and not false), refused with this. */
  readonly refuse?: string;
  /** A flanneld flag Tartan accepts and ignores: why, logged when it is given. */
  readonly ignore?: string;
}

/** Flags by name, in the order help lists them. */
export type FlagSet = Readonly<Record<string, FlagDef>>;

export type FlagValues<F extends FlagSet> = {
  -readonly [K in keyof F]: F[K] extends FlagDef<infer O> ? O : never;
};

interface Spec {
  readonly help: string;
  readonly short?: string;
  readonly env?: boolean;
  readonly secret?: boolean;
  readonly refuse?: string;
  readonly ignore?: string;
}

const plain = (s: Spec) => ({
  help: s.help,
  ...(s.short ? { short: s.short } : {}),
  ...(s.env ? { env: true } : {}),
  ...(s.secret ? { secret: true } : {}),
  ...(s.refuse ? { refuse: s.refuse } : {}),
  ...(s.ignore ? { ignore: s.ignore } : {}),
});

/**
 * A flag taking a value. With `default`, the value is always there (the default runs
 * through `value` like a given one); with `shownDefault` only help shows a default that is
 * worked out elsewhere (the host name, the registry's directory…).
 */
export function stringFlag<T>(
  s: Spec & { readonly value: v.GenericSchema<string, T>; readonly default: string },
): FlagDef<T>;
export function stringFlag<T>(
  s: Spec & { readonly value: v.GenericSchema<string, T>; readonly shownDefault?: string },
): FlagDef<T | undefined>;
export function stringFlag(s: Spec & { readonly default: string }): FlagDef<string>;
export function stringFlag(s: Spec & { readonly shownDefault?: string }): FlagDef<string | undefined>;
export function stringFlag<T>(
  s: Spec & { value?: v.GenericSchema<string, T>; default?: string; shownDefault?: string },
): FlagDef<T | undefined> {
  const value = s.value ?? (v.string() as unknown as v.GenericSchema<string, T>);
  const shown = s.default ?? s.shownDefault;
  return {
    kind: "string",
    ...plain(s),
    ...(shown !== undefined ? { default: shown } : {}),
    schema: s.default !== undefined ? v.optional(value, s.default) : v.optional(value),
  } as FlagDef<T | undefined>;
}

/** A switch: `--x`, `--x=true|false`, `--no-x`; false unless given. */
export function booleanFlag(s: Spec & { readonly default?: boolean }): FlagDef<boolean> {
  const d = s.default ?? false;
  return {
    kind: "boolean",
    ...plain(s),
    ...(d ? { default: "true" } : {}),
    schema: v.optional(v.boolean(), d),
  };
}

/** A repeatable flag (`--iface a --iface b`; FLANNELD_IFACE=a,b); empty unless given. */
export function listFlag<T = string>(
  s: Spec & { readonly item?: v.GenericSchema<string, T>; readonly shownDefault?: string },
): FlagDef<T[]> {
  const item = s.item ?? (v.string() as unknown as v.GenericSchema<string, T>);
  return {
    kind: "list",
    ...plain(s),
    ...(s.shownDefault !== undefined ? { default: s.shownDefault } : {}),
    schema: v.optional(v.array(item), []),
  } as FlagDef<T[]>;
}

/** The same flag with the help a particular command gives it. */
export function withHelp<T>(f: FlagDef<T>, help: string, extra: Partial<FlagDef<T>> = {}): FlagDef<T> {
  return { ...f, ...extra, help };
}

export function envName(flag: string): string {
  return `FLANNELD_${flag.toUpperCase().replaceAll("-", "_")}`;
}

/** A given flag as the user would write it: `--ip-masq`, `--iface=eth0,eth1`. */
export function givenAs(name: string, raw: RawValue, secret = false): string {
  const shown = secret ? "<redacted>" : Array.isArray(raw) ? raw.join(",") : String(raw);
  return raw === true ? `--${name}` : `--${name}=${shown}`;
}

function source(name: string, fromEnv: readonly string[]): string {
  return fromEnv.includes(name) ? ` (from ${envName(name)})` : "";
}

/**
 * Validates parsed flags against their declarations: a refused flanneld flag, or a bad
 * value, is a ValidationError of one line naming the flag, the value and what is allowed.
 */
export function validateFlags<F extends FlagSet>(
  defs: F,
  flags: RawFlags,
  fromEnv: readonly string[] = [],
): FlagValues<F> {
  for (const [name, d] of Object.entries(defs)) {
    const raw = flags[name];
    if (d.refuse && raw !== undefined && raw !== false)
      throw new ValidationError(`${givenAs(name, raw)}: ${d.refuse}${source(name, fromEnv)}`);
  }
  const out: Record<string, unknown> = {};
  for (const [name, d] of Object.entries(defs)) {
    const raw = flags[name];
    const r = v.safeParse(d.schema, raw);
    if (!r.success)
      throw new ValidationError(
        `${givenAs(name, raw, d.secret)}: ${r.issues[0].message}${source(name, fromEnv)}`,
      );
    out[name] = r.output;
  }
  return out as FlagValues<F>;
}

/** The accepted-and-ignored flanneld flags that were given, with why they change nothing. */
export function ignoredFlags(
  defs: FlagSet,
  flags: RawFlags,
  fromEnv: readonly string[] = [],
): { flag: string; why: string }[] {
  return Object.entries(defs)
    .filter(([name, d]) => d.ignore && flags[name] !== undefined)
    .map(([name, d]) => ({ flag: givenAs(name, flags[name]) + source(name, fromEnv), why: d.ignore! }));
}
