/**
 * The ABI check: every struct layout, counter id, map name and program name in
 * src/bpf/abi.ts equals what tartan.h compiled to, read from the BTF of
 * build/tartan.bpf.o with bpftool. A field added on one side only fails here.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { COUNTER_NAMES, LAYOUTS, MAPS, PROGRAMS } from "../../src/bpf/abi.ts";
import { ensureObject } from "./harness.ts";

interface BtfType {
  id: number;
  kind: string;
  name?: string;
  size?: number;
  type_id?: number;
  members?: Array<{ name: string; type_id: number; bits_offset: number }>;
  values?: Array<{ name: string; val: number }>;
  vars?: Array<{ type_id: number }>;
  nr_elems?: number;
}

let types = new Map<number, BtfType>();
beforeAll(async () => {
  const obj = await ensureObject();
  const p = Bun.spawn(["bpftool", "btf", "dump", "file", obj, "format", "raw", "-j"], { stdout: "pipe" });
  const doc = (await new Response(p.stdout).json()) as { types: BtfType[] };
  expect(await p.exited).toBe(0);
  types = new Map(doc.types.map((t) => [t.id, t]));
});

function byName(kind: string, name: string): BtfType {
  const t = [...types.values()].find((x) => x.kind === kind && x.name === name);
  if (!t) throw new Error(`${kind} ${name} not in the object's BTF`);
  return t;
}

function sizeOf(id: number): number {
  const t = types.get(id)!;
  switch (t.kind) {
    case "TYPEDEF":
    case "VOLATILE":
    case "CONST":
      return sizeOf(t.type_id!);
    case "ARRAY":
      return sizeOf(t.type_id!) * t.nr_elems!;
    default:
      return t.size!;
  }
}

describe("tartan.h == abi.ts", () => {
  for (const [name, layout] of Object.entries(LAYOUTS)) {
    test(`struct ${name}: size and every field's offset and size`, () => {
      const s = byName("STRUCT", name);
      const btf = Object.fromEntries(s.members!.map((m) => [m.name, [m.bits_offset / 8, sizeOf(m.type_id)]]));
      expect({ size: s.size, fields: btf }).toEqual({
        size: layout.size,
        fields: layout.fields as unknown as Record<string, number[]>,
      });
    });
  }

  // the enum itself is not in BTF (no map may use it as a key), so read it from the header
  test("counter ids: enum tartan_counter in tartan.h, in order, CNT_MAX last", async () => {
    const h = await Bun.file(`${import.meta.dir}/../../bpf/include/tartan.h`).text();
    const body = /enum tartan_counter \{([\s\S]*?)\};/.exec(h)![1]!;
    const names = [...body.matchAll(/^\s*CNT_([A-Z0-9_]+)(?:\s*=\s*0)?,/gm)].map((m) => m[1]!.toLowerCase());
    expect(names.at(-1)).toBe("max");
    expect(names.slice(0, -1)).toEqual([...COUNTER_NAMES]);
  });

  test("the counter map holds exactly one slot per counter", () => {
    const maps = byName("DATASEC", ".maps").vars!.map((v) => types.get(v.type_id)!);
    const counters = maps.find((m) => m.name === MAPS.counters)!;
    const def = types.get(counters.type_id!)!;
    const maxEntries = def.members!.find((m) => m.name === "max_entries")!;
    // __uint(max_entries, N) is "int (*)[N]": pointer → array of N
    const arr = types.get(types.get(maxEntries.type_id)!.type_id!)!;
    expect(arr.nr_elems).toBe(COUNTER_NAMES.length);
  });

  test("map names", () => {
    const maps = byName("DATASEC", ".maps").vars!.map((v) => types.get(v.type_id)!.name);
    expect(maps.sort()).toEqual(Object.values(MAPS).sort());
  });

  test("program names", () => {
    const funcs = [...types.values()]
      .filter((t) => t.kind === "FUNC" && t.name!.startsWith("tartan_"))
      .map((t) => t.name);
    expect(funcs.sort()).toEqual(Object.values(PROGRAMS).sort());
  });
});
