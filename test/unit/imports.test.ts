/**
 * The import direction, checked from the source so it stays true: data flows from
 * options and config at the bottom, through lease sources, the lease set and reconcile,
 * the backends, the status contract, the readers of that contract (CNI, doctor, HTTP),
 * to the agent that wires them and the CLI on top. A module may import from its own
 * directory and from layers below; never from above, never sideways.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const SRC = resolve(import.meta.dir, "../../src");

/** Lowest first. Units on one line are peers: neither may import the other. */
const LAYERS: readonly (readonly string[])[] = [
  ["log.ts", "validation.ts", "version.ts", "files.ts", "slices.ts"],
  ["config"],
  ["net"],
  ["bpf"],
  ["registry", "kube"],
  ["lease"],
  ["backend"],
  ["status"],
  ["cni"],
  ["doctor"],
  ["http"],
  ["agent"],
  ["cli"],
  ["main.ts"],
];

/** The unit a file belongs to: its top directory under src/, or the file itself. */
function unitOf(file: string): string {
  return relative(SRC, file).split("/")[0]!;
}

function layerOf(unit: string): number {
  const i = LAYERS.findIndex((l) => l.includes(unit));
  if (i < 0) throw new Error(`src/${unit} is in no layer: add it to LAYERS in test/unit/imports.test.ts`);
  return i;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return e.name.endsWith(".ts") && !e.name.endsWith(".d.ts") ? [p] : [];
  });
}

/** Relative imports of a file: static `from "./x"`, `import "./x"` and dynamic `import("./x")`. */
export function relativeImports(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)["'](\.{1,2}\/[^"']+)["']/g))
    out.push(m[1]!);
  return out;
}

/** Every import that breaks the direction, as "src/a/x.ts → src/b/y.ts (why)". */
function violations(): string[] {
  const bad: string[] = [];
  for (const file of sourceFiles(SRC)) {
    const from = unitOf(file);
    const fromLayer = layerOf(from);
    for (const spec of relativeImports(readFileSync(file, "utf8"))) {
      const target = resolve(dirname(file), spec);
      if (!target.startsWith(`${SRC}/`)) continue; // package.json, build/ assets
      const to = unitOf(target);
      if (to === from) continue;
      const toLayer = layerOf(to);
      const where = `src/${relative(SRC, file)} → src/${relative(SRC, target)}`;
      if (toLayer > fromLayer) bad.push(`${where} (imports upward: ${to} is above ${from})`);
      else if (toLayer === fromLayer && fromLayer !== 0)
        bad.push(`${where} (imports sideways: ${to} and ${from} are peers)`);
    }
  }
  return bad;
}

describe("import direction", () => {
  test("every module imports only from its own unit and from layers below", () => {
    expect(violations()).toEqual([]);
  });

  test("every unit under src/ has a layer", () => {
    const units = new Set(sourceFiles(SRC).map(unitOf));
    for (const u of units) expect(() => layerOf(u)).not.toThrow();
  });

  test("the checker sees static, side-effect and dynamic imports", () => {
    const text = [
      'import { a } from "../config/cidr.ts";',
      'import type { B } from "./b.ts";',
      'import "./side.ts";',
      'const { c } = await import("../registry/etcd.ts");',
      'import { d } from "valibot";',
    ].join("\n");
    expect(relativeImports(text)).toEqual([
      "../config/cidr.ts",
      "./b.ts",
      "./side.ts",
      "../registry/etcd.ts",
    ]);
  });
});
