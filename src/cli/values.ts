/**
 * The kinds of value flags take, as valibot schemas from the raw string to a typed value.
 * Their messages say what is allowed; flag-def.ts puts the flag and the value in front.
 */
import * as v from "valibot";
import { type Ip4, parseCidr, parseIp4 } from "../config/cidr.ts";
import { type Ip6, isV4Mapped, parseIp6 } from "../config/cidr6.ts";
import type { HostPort } from "../config/options.ts";

export const ipv4: v.GenericSchema<string, Ip4> = v.pipe(
  v.string(),
  v.check((s) => parseIp4(s) !== null, "must be an IPv4 address like 198.18.0.1"),
  v.transform((s) => parseIp4(s)!),
);

export const ipv6: v.GenericSchema<string, Ip6> = v.pipe(
  v.string(),
  v.check((s) => {
    const a = parseIp6(s);
    return a !== null && !isV4Mapped(a);
  }, "must be an IPv6 address like fd00:18::1"),
  v.transform((s) => parseIp6(s)!),
);

/** An address of either family (flanneld's --iface-can-reach takes both). */
export const ipAddress: v.GenericSchema<string, { v4: Ip4 } | { v6: Ip6 }> = v.pipe(
  v.string(),
  v.check(
    (s) => parseIp4(s) !== null || parseIp6(s) !== null,
    "must be an IPv4 or IPv6 address like 198.18.0.1 or fd00:18::1",
  ),
  v.transform((s) => (parseIp4(s) !== null ? { v4: parseIp4(s)! } : { v6: parseIp6(s)! })),
);

export const port: v.GenericSchema<string, number> = v.pipe(
  v.string(),
  v.check((s) => /^\d{1,5}$/.test(s) && Number(s) <= 65535, "must be a port number 0..65535"),
  v.transform(Number),
);

/** A whole number in [min, max]; `what` completes "must be …". */
export const wholeNumber = (min: number, max: number, what: string): v.GenericSchema<string, number> =>
  v.pipe(
    v.string(),
    v.check((s) => /^\d+$/.test(s) && Number(s) >= min && Number(s) <= max, `must be ${what}`),
    v.transform(Number),
  );

export function oneOf<const T extends readonly string[]>(values: T): v.GenericSchema<string, T[number]> {
  return v.picklist(values, `must be one of ${values.join(", ")}`) as v.GenericSchema<string, T[number]>;
}

export const absolutePath: v.GenericSchema<string, string> = v.pipe(
  v.string(),
  v.regex(/^\//, "must be an absolute path"),
);

export const nonEmptyPath: v.GenericSchema<string, string> = v.pipe(
  v.string(),
  v.minLength(1, "must be a path"),
);

export const interfaceName: v.GenericSchema<string, string> = v.pipe(
  v.string(),
  v.regex(/^[^\s/:]{1,15}$/, "must be an interface name (1-15 characters)"),
);

export const cidr: v.GenericSchema<string, string> = v.pipe(
  v.string(),
  v.check((s) => parseCidr(s) !== null, "must be a CIDR like 10.244.0.0/16"),
);

export const regexSource: v.GenericSchema<string, string> = v.pipe(
  v.string(),
  v.check((s) => {
    try {
      new RegExp(s);
      return true;
    } catch {
      return false;
    }
  }, "must be a valid regular expression"),
);

/** Go-style durations: 24h, 90m, 30s, 1h30m, 500ms. */
export function parseDuration(s: string): number | null {
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(s)) return null;
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  for (const m of s.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) total += Number(m[1]) * unit[m[2]!]!;
  return total;
}

/** A duration of at least `minMs`, in milliseconds. */
export const duration = (minMs: number, example: string): v.GenericSchema<string, number> =>
  v.pipe(
    v.string(),
    v.check((s) => (parseDuration(s) ?? 0) >= minMs, `must be a duration of at least ${example}`),
    v.transform((s) => parseDuration(s)!),
  );

export function parseHostPort(s: string): HostPort | null {
  const m = /^(.*):(\d{1,5})$/.exec(s);
  if (!m || Number(m[2]) > 65535) return null;
  const host = m[1]!.replace(/^\[(.*)\]$/, "$1");
  if (host !== "" && host !== "localhost" && parseIp4(host) === null && !host.includes(":")) return null;
  return { host: host === "" ? "0.0.0.0" : host, port: Number(m[2]) };
}

export const hostPort: v.GenericSchema<string, HostPort> = v.pipe(
  v.string(),
  v.check((s) => parseHostPort(s) !== null, "must be HOST:PORT with an IPv4 host, e.g. 127.0.0.1:8471"),
  v.transform((s) => parseHostPort(s)!),
);
