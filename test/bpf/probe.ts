/**
 * The C side of the ABI check, asked of the compiler itself: a small host program,
 * generated from the TypeScript tables it checks, includes tartan.h and libbpf's and
 * the kernel's uapi headers and prints every value and layout as JSON. A name the
 * TypeScript side has and C lacks fails to compile (and the test says which).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Layout } from "../../src/bpf/layout.ts";

export interface ProbeRequest {
  /** C integer expressions by key: macros, enum values. */
  readonly values: Readonly<Record<string, string>>;
  /** C struct name → the fields to measure. */
  readonly structs: Readonly<Record<string, Layout>>;
}

export interface ProbeResult {
  readonly values: Record<string, number>;
  readonly structs: Record<string, { size: number; fields: Record<string, [number, number]> }>;
}

const ROOT = `${import.meta.dir}/../..`;

function source(req: ProbeRequest): string {
  const lines: string[] = [
    "#include <stdio.h>",
    "#include <stddef.h>",
    "#include <errno.h>",
    "#include <linux/bpf.h>",
    "#include <linux/if_link.h>",
    "#include <bpf/bpf.h>",
    "#include <bpf/libbpf.h>",
    '#include "tartan.h"',
    "int main(void) {",
    '  printf("{\\"values\\": {");',
  ];
  Object.entries(req.values).forEach(([key, expr], i) => {
    lines.push(`  printf("%s\\"${key}\\": %lld", ${i === 0 ? '""' : '", "'}, (long long)(${expr}));`);
  });
  lines.push('  printf("}, \\"structs\\": {");');
  Object.entries(req.structs).forEach(([name, layout], i) => {
    const s = `struct ${name}`;
    lines.push(
      `  printf("%s\\"${name}\\": {\\"size\\": %zu, \\"fields\\": {", ${i === 0 ? '""' : '", "'}, sizeof(${s}));`,
    );
    Object.keys(layout.fields).forEach((f, j) => {
      lines.push(
        `  printf("%s\\"${f}\\": [%zu, %zu]", ${j === 0 ? '""' : '", "'}, offsetof(${s}, ${f}), sizeof(((${s} *)0)->${f}));`,
      );
    });
    lines.push('  printf("}}");');
  });
  lines.push('  printf("}}\\n");', "  return 0;", "}");
  return lines.join("\n");
}

/** Compiles and runs the probe (clang-19 for this host); throws with the compiler's complaint. */
export function runProbe(req: ProbeRequest): ProbeResult {
  const work = mkdtempSync(join(tmpdir(), "tartan-abi-probe-"));
  try {
    const exe = join(work, "probe");
    const cc = Bun.spawnSync(
      ["clang-19", "-Wall", "-Werror", `-I${ROOT}/bpf/include`, "-x", "c", "-", "-o", exe],
      {
        stdin: new TextEncoder().encode(source(req)),
        stderr: "pipe",
      },
    );
    if (cc.exitCode !== 0) throw new Error(`the ABI probe does not compile:\n${cc.stderr.toString()}`);
    const run = Bun.spawnSync([exe], { stdout: "pipe", stderr: "pipe" });
    if (run.exitCode !== 0) throw new Error(`the ABI probe failed: ${run.stderr.toString()}`);
    return JSON.parse(run.stdout.toString()) as ProbeResult;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
