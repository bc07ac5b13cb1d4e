/**
 * Running a delegate plugin the way libcni's invoke does: find it in CNI_PATH, run it
 * with the caller's environment and CNI_COMMAND set, the config on stdin, and turn its
 * stdout into a result — or its CNI error (code and message kept) into a CniError.
 */
import { accessSync, constants, statSync } from "node:fs";
import { join } from "node:path";
import { CNI_ERR, CniError, isCniErrorJson } from "./errors.ts";

/** The first executable file named `type` in the CNI_PATH directories. */
export function findPlugin(type: string, path: readonly string[]): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(type))
    throw new CniError(CNI_ERR.INVALID_CONFIG, `delegate type ${JSON.stringify(type)} is not a plugin name`);
  for (const dir of path) {
    const file = join(dir, type);
    try {
      if (!statSync(file).isFile()) continue;
      accessSync(file, constants.X_OK);
      return file;
    } catch {}
  }
  throw new CniError(
    CNI_ERR.DELEGATE_NOT_FOUND,
    `failed to find plugin ${JSON.stringify(type)} in CNI_PATH ${path.join(":") || "(empty)"}`,
  );
}

export interface DelegateCall {
  readonly command: "ADD" | "DEL" | "CHECK";
  readonly type: string;
  readonly conf: Record<string, unknown>;
  /** The invocation's environment (CNI_* included); CNI_COMMAND is replaced. */
  readonly env: Record<string, string | undefined>;
  readonly path: readonly string[];
}

/** Runs the delegate; returns its parsed stdout (null when it printed nothing, as DEL and CHECK do). */
export async function invokeDelegate(call: DelegateCall): Promise<unknown> {
  const file = findPlugin(call.type, call.path);
  const env: Record<string, string> = {};
  for (const [k, val] of Object.entries(call.env)) if (val !== undefined) env[k] = val;
  env.CNI_COMMAND = call.command;
  let proc: ReturnType<typeof Bun.spawn<"pipe", "pipe", "pipe">>;
  try {
    proc = Bun.spawn([file], { stdin: "pipe", stdout: "pipe", stderr: "pipe", env });
  } catch (e) {
    throw new CniError(CNI_ERR.DELEGATE_FAILED, `cannot run ${file}: ${(e as Error).message}`);
  }
  proc.stdin.write(JSON.stringify(call.conf));
  await proc.stdin.end();
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  let parsed: unknown = null;
  if (out.trim() !== "") {
    try {
      parsed = JSON.parse(out);
    } catch {
      parsed = undefined;
    }
  }
  if (code !== 0) {
    if (isCniErrorJson(parsed))
      throw new CniError(parsed.code, `${call.type} ${call.command}: ${parsed.msg}`, parsed.details);
    throw new CniError(
      CNI_ERR.DELEGATE_FAILED,
      `${call.type} ${call.command} exited ${code}`,
      (err.trim() || out.trim()).slice(0, 500) || undefined,
    );
  }
  if (parsed === undefined)
    throw new CniError(
      CNI_ERR.DELEGATE_FAILED,
      `${call.type} ${call.command} printed something that is not JSON`,
      out.slice(0, 500),
    );
  return parsed;
}
