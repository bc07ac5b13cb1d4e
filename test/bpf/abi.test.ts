/**
 * The ABI check. Struct layouts, map names and program names in src/bpf/abi.ts equal
 * what tartan.h compiled to, read from the BTF of build/tartan.bpf.o with bpftool.
 * Constants and counter ids equal tartan.h's, and the libbpf and kernel structs and
 * flags the FFI writes by hand (src/bpf/structs.ts) and the errno table equal the
 * installed headers', asked of the compiler through a probe (probe.ts); the tcx attach
 * types, newer than those headers, equal the running kernel's (its BTF). A field or
 * value added or changed on one side only fails here.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { CONSTANTS, COUNTER_NAMES, LAYOUTS, MAPS, PROGRAMS } from "../../src/bpf/abi.ts";
import { ENOTSUPP, ERRNO } from "../../src/bpf/errors.ts";
import { LIBBPF_CONSTANTS, LIBBPF_STRUCTS, TCX_CONSTANTS } from "../../src/bpf/structs.ts";
import { ensureObject } from "./harness.ts";
import { type ProbeResult, runProbe } from "./probe.ts";

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

const counterMacro = (name: string) => `CNT_${name.toUpperCase()}`;

let types = new Map<number, BtfType>();
let probe: ProbeResult;
beforeAll(async () => {
  probe = runProbe({
    values: {
      ...Object.fromEntries(Object.keys(CONSTANTS).map((k) => [`TARTAN_${k}`, `TARTAN_${k}`])),
      ...Object.fromEntries([...COUNTER_NAMES, "max"].map((n) => [counterMacro(n), counterMacro(n)])),
      ...Object.fromEntries(Object.keys(LIBBPF_CONSTANTS).map((k) => [k, k])),
      // ENOTSUPP is the kernel's internal errno: no uapi header defines it
      ...Object.fromEntries(Object.keys(ERRNO).flatMap((k) => (k === "ENOTSUPP" ? [] : [[k, k]]))),
    },
    structs: LIBBPF_STRUCTS,
  });
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

  test("constants: every TARTAN_* in abi.ts has tartan.h's value", () => {
    const want = Object.fromEntries(Object.entries(CONSTANTS).map(([k, v]) => [`TARTAN_${k}`, v]));
    const got = Object.fromEntries(Object.keys(want).map((k) => [k, probe.values[k]]));
    expect(got).toEqual(want);
  });

  test("constants: every #define TARTAN_* in tartan.h is mirrored in abi.ts, or is a map capacity", async () => {
    const h = await Bun.file(`${import.meta.dir}/../../bpf/include/tartan.h`).text();
    const defined = [...h.matchAll(/^#define TARTAN_(\w+)/gm)].map((m) => m[1]!).filter((n) => n !== "H");
    // map capacities (TARTAN_MAX_*) size the maps in maps.h; nothing in the agent depends on them
    const unmirrored = defined.filter((n) => !(n in CONSTANTS) && !n.startsWith("MAX_"));
    expect(unmirrored).toEqual([]);
  });

  // the enum is not in BTF (no map may use it as a key): the probe reads it
  test("counter ids: CNT_<name> == its index in COUNTER_NAMES, and CNT_MAX is the count", () => {
    const want = Object.fromEntries(COUNTER_NAMES.map((n, i) => [counterMacro(n), i]));
    const got = Object.fromEntries(
      COUNTER_NAMES.map((n) => [counterMacro(n), probe.values[counterMacro(n)]]),
    );
    expect(got).toEqual(want);
    expect(probe.values.CNT_MAX).toBe(COUNTER_NAMES.length);
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

describe("the structs and flags the FFI writes by hand == libbpf's and the kernel's headers", () => {
  for (const [name, layout] of Object.entries(LIBBPF_STRUCTS)) {
    test(`struct ${name}: size and the offset and size of every field used`, () => {
      expect(probe.structs[name]).toEqual({
        size: layout.size,
        fields: layout.fields as unknown as Record<string, [number, number]>,
      });
    });
  }

  test("objectId reads the id of a map's info where it reads a program's", () => {
    expect(LIBBPF_STRUCTS.bpf_map_info.fields.id).toEqual(LIBBPF_STRUCTS.bpf_prog_info.fields.id);
  });

  test("flag and enum values", () => {
    const got = Object.fromEntries(Object.keys(LIBBPF_CONSTANTS).map((k) => [k, probe.values[k]]));
    expect(got).toEqual(LIBBPF_CONSTANTS);
  });

  test("tcx attach types (Linux 6.6, newer than the headers) == the running kernel's enum bpf_attach_type", async () => {
    const vmlinux = "/sys/kernel/btf/vmlinux";
    if (!existsSync(vmlinux)) {
      console.log(`skipped: ${vmlinux} is missing (a kernel without BTF); tcx attach types not checked`);
      return;
    }
    const p = Bun.spawn(["bpftool", "btf", "dump", "file", vmlinux], { stdout: "pipe" });
    const text = await new Response(p.stdout).text();
    expect(await p.exited).toBe(0);
    // [id] ENUM 'bpf_attach_type' … then one "\t'NAME' val=N" line per value
    const block = /ENUM 'bpf_attach_type'[^\n]*\n((?:\t[^\n]*\n)+)/.exec(text)?.[1] ?? "";
    const values = Object.fromEntries(
      [...block.matchAll(/'(\w+)' val=(\d+)/g)].map((m) => [m[1], Number(m[2])]),
    );
    const { BPF_F_BEFORE: _flag, ...types } = TCX_CONSTANTS; // a flag, not in BTF: loader.test.ts checks what it does
    if (values.BPF_TCX_INGRESS === undefined) {
      console.log("skipped: this kernel has no tcx (before 6.6); the agent uses clsact here");
      return;
    }
    expect(Object.fromEntries(Object.keys(types).map((k) => [k, values[k]]))).toEqual(types);
  });

  test("errno numbers and libbpf's error codes", () => {
    const { ENOTSUPP: _internal, ...uapi } = ERRNO;
    const got = Object.fromEntries(Object.keys(uapi).map((k) => [k, probe.values[k]]));
    expect(got).toEqual(uapi);
    expect(ENOTSUPP).toBe(524); // include/linux/errno.h, kernel-internal
  });
});
