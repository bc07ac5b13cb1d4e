/**
 * Applying many kernel changes in two processes: `ip -batch -` and `bridge -batch -`.
 * Removals run with -force and tolerate entries that are already gone; everything
 * else must succeed, and a failure names the first line the kernel refused.
 */
import { run } from "./exec.ts";
import { IpError } from "./ip.ts";

function runBatch(tool: "ip" | "bridge", lines: readonly string[], force: boolean) {
  if (lines.length === 0) return Promise.resolve({ code: 0, stdout: "", stderr: "" });
  return run([tool, ...(force ? ["-force"] : []), "-batch", "-"], `${lines.join("\n")}\n`);
}

const GONE =
  /No such file or directory|No such process|Cannot find device|does not exist|not found|Object "fdb" is unknown|RTNETLINK answers: No such/;

export async function applyBatch(tool: "ip" | "bridge", lines: readonly string[]): Promise<void> {
  const r = await runBatch(tool, lines, false);
  if (r.code !== 0) throw new IpError(`${tool} -batch (${lines.length} lines)`, r.stderr, r.code);
}

/** Removals: keep going past errors; only errors other than "already gone" fail. */
export async function removeBatch(tool: "ip" | "bridge", lines: readonly string[]): Promise<void> {
  const r = await runBatch(tool, lines, true);
  if (r.code === 0) return;
  const real = r.stderr
    .split("\n")
    .filter((l) => l.trim() && !GONE.test(l) && !/^Command failed -:\d+$/.test(l.trim()));
  if (real.length > 0)
    throw new IpError(`${tool} -batch removal (${lines.length} lines)`, real.join("\n"), r.code);
}
