/**
 * net-conf.json's keys as flannel reads them. flannel decodes the file with Go's
 * encoding/json, which matches a key to a field exactly or else ignoring letter case
 * (`{"network": …}` works), keeps the last of two spellings of one field, and ignores keys
 * it has no field for. Tartan does the same, and warns about what flannel passes over in
 * silence: keys nobody reads (a typo like "SubnetLenght" is a 3 a.m. problem) and flannel
 * keys Tartan has no use for. Pure.
 */
import { closestName } from "../validation.ts";

/** flannel's top-level keys (pkg/subnet/config.go). */
const TOP_KEYS = [
  "Network",
  "SubnetLen",
  "SubnetMin",
  "SubnetMax",
  "EnableIPv4",
  "EnableIPv6",
  "EnableNFTables",
  "IPv6Network",
  "IPv6SubnetLen",
  "IPv6SubnetMin",
  "IPv6SubnetMax",
  "Backend",
] as const;

/** The Backend keys of the backends Tartan runs (flannel's vxlan and host-gw; pkg/backend/vxlan). */
const BACKEND_KEYS = ["Type", "VNI", "Port", "MTU", "DirectRouting", "GBP", "Learning"] as const;

const IPV6_OFF =
  'EnableIPv6 is not true, so the network is IPv4 only (add "EnableIPv6": true for dual stack)';

/**
 * flannel keys that have no effect (here, or in this document), and why; no warning when
 * they ask for nothing. `harmless` sees the key's value and the whole (canonical) document.
 */
const UNUSED: Record<
  string,
  { readonly why: string; readonly harmless: (v: unknown, doc: Record<string, unknown>) => boolean }
> = {
  EnableNFTables: { why: "Tartan masquerades with nftables always", harmless: () => true },
  // flannel reads the IPv6 keys only with EnableIPv6: true
  IPv6Network: { why: IPV6_OFF, harmless: (v, doc) => doc.EnableIPv6 === true || v === "" },
  IPv6SubnetLen: { why: IPV6_OFF, harmless: (v, doc) => doc.EnableIPv6 === true || !v },
  IPv6SubnetMin: { why: IPV6_OFF, harmless: (v, doc) => doc.EnableIPv6 === true || !v },
  IPv6SubnetMax: { why: IPV6_OFF, harmless: (v, doc) => doc.EnableIPv6 === true || !v },
  "Backend.GBP": { why: "Tartan's vxlan devices carry no group policy", harmless: (v) => v === false },
  "Backend.Learning": {
    why: "Tartan's vxlan devices never learn (as flannel's default)",
    harmless: (v) => v === false,
  },
};

export interface CanonicalDoc {
  /** The document with flannel's spelling of every key it knows; unknown keys left out. */
  readonly doc: Record<string, unknown>;
  /** One line per thing worth knowing, naming the key. */
  readonly warnings: string[];
}

/** Go's rule: an exact match wins, else the first field equal ignoring letter case. */
function fieldFor(key: string, fields: readonly string[]): string | null {
  if (fields.includes(key)) return key;
  return fields.find((f) => f.toLowerCase() === key.toLowerCase()) ?? null;
}

function canonicalObject(
  obj: Record<string, unknown>,
  fields: readonly string[],
  where: string,
  warnings: string[],
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const spelled: Record<string, string> = {};
  for (const [key, value] of Object.entries(obj)) {
    const field = fieldFor(key, fields);
    if (field === null) {
      // a typo grows with the word: allow about one wrong letter in four
      const near = closestName(key, fields, Math.max(2, Math.floor(key.length / 4)));
      warnings.push(
        `unknown key "${where}${key}" is ignored (flannel ignores it too)${near ? `; did you mean "${where}${near}"?` : ""}`,
      );
      continue;
    }
    if (spelled[field] !== undefined)
      warnings.push(
        `"${where}${field}" is given twice (as "${spelled[field]}" and "${key}"); the last one counts, as in flannel`,
      );
    spelled[field] = key;
    out[field] = value;
  }
  return out;
}

export function canonicalKeys(doc: Record<string, unknown>): CanonicalDoc {
  const warnings: string[] = [];
  const top = canonicalObject(doc, TOP_KEYS, "", warnings);
  const backend = top.Backend;
  if (typeof backend === "object" && backend !== null && !Array.isArray(backend))
    top.Backend = canonicalObject(backend as Record<string, unknown>, BACKEND_KEYS, "Backend.", warnings);
  for (const [path, u] of Object.entries(UNUSED)) {
    const [first, second] = path.split(".") as [string, string | undefined];
    const parent = second === undefined ? top : (top[first] as Record<string, unknown> | undefined);
    const value = parent?.[second ?? first];
    if (value !== undefined && !u.harmless(value, top))
      warnings.push(`"${path}" is flannel's, but has no effect here: ${u.why}`);
  }
  return { doc: top, warnings };
}
