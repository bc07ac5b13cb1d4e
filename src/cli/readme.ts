/**
 * The README's flag tables, generated from the declarations: between `<!-- flags:NAME -->`
 * and `<!-- /flags -->` the README holds exactly what `flagSections()` renders.
 * `scripts/readme-flags` rewrites them; a unit test fails when they drift.
 */
import type { FlagSet } from "./flag-def.ts";
import { IGNORED_FLANNELD_FLAGS, REFUSED_FLANNELD_FLAGS } from "./flanneld-compat.ts";
import { markdownCompatTable, markdownFlagTable } from "./help.ts";
import {
  FLANNELD_AGENT_FLAGS,
  KUBE_FLAGS,
  LOG_FLAGS,
  REGISTRY_FLAGS,
  TARTAN_AGENT_FLAGS,
} from "./options.ts";

const SECTIONS = {
  flanneld: { ...KUBE_FLAGS, ...etcdFlags(), ...FLANNELD_AGENT_FLAGS },
  tartan: { ...TARTAN_AGENT_FLAGS, registry: REGISTRY_FLAGS.registry, ...LOG_FLAGS },
  "flanneld-compat": { ...REFUSED_FLANNELD_FLAGS, ...IGNORED_FLANNELD_FLAGS },
} satisfies Record<string, FlagSet>;

function etcdFlags(): FlagSet {
  return Object.fromEntries(Object.entries(REGISTRY_FLAGS).filter(([n]) => n.startsWith("etcd-")));
}

/** The flag sets by marker name: flanneld's flags, Tartan's own, flanneld's that Tartan refuses or ignores. */
export const README_FLAG_SETS: Record<string, FlagSet> = SECTIONS;

/** The tables by marker name. */
export function flagSections(): Record<string, string> {
  return {
    flanneld: markdownFlagTable(SECTIONS.flanneld),
    tartan: markdownFlagTable(SECTIONS.tartan),
    "flanneld-compat": markdownCompatTable(SECTIONS["flanneld-compat"]),
  };
}

const SECTION = /<!-- flags:([\w-]+) -->\n[\s\S]*?<!-- \/flags -->/g;

/** `readme` with every flag section re-rendered; unknown section names are an error. */
export function renderFlagSections(readme: string): string {
  const sections = flagSections();
  return readme.replace(SECTION, (_, name: string) => {
    const body = sections[name];
    if (body === undefined) throw new Error(`README has an unknown flag section "${name}"`);
    return `<!-- flags:${name} -->\n${body}\n<!-- /flags -->`;
  });
}

/** The section names a README holds, in order. */
export function sectionNames(readme: string): string[] {
  return [...readme.matchAll(SECTION)].map((m) => m[1]!);
}
