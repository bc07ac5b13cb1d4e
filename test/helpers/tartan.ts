/**
 * Running the real binary in tests: where it is, and a typed view of the agent's
 * endpoints. Root suites require `scripts/build` to have produced dist/tartan.
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import type { AgentStatus } from "../../src/status/status.ts";
import { type Lab, type LabProcess, run, StopPolling, until } from "./netns.ts";

export const ROOT = resolve(import.meta.dir, "../..");
export const TARTAN = join(ROOT, "dist/tartan");

export function requireBinary(): string {
  if (!existsSync(TARTAN)) throw new Error(`${TARTAN} is missing: run scripts/build first`);
  return TARTAN;
}

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

export async function tartan(args: string[]) {
  return run([requireBinary(), ...args]);
}

export interface AgentSpec {
  node: { ns: string };
  name: string;
  /** The registry flag: --registry=sqlite:PATH or --etcd-endpoints=URL (a bare sqlite:PATH is accepted too). */
  registry: string;
  backend?: string;
  subnetFile: string;
  httpPort?: number;
  extra?: string[];
  /** Extra environment (NOTIFY_SOCKET=…). */
  env?: Record<string, string>;
}

export function startAgent(lab: Lab, s: AgentSpec): LabProcess {
  return lab.spawn(
    s.node.ns,
    s.name,
    [
      requireBinary(),
      "agent",
      `--backend=${s.backend ?? "alloc"}`,
      s.registry.startsWith("--") ? s.registry : `--registry=${s.registry}`,
      "--iface=eth0",
      `--node-name=${s.name}`,
      `--subnet-file=${s.subnetFile}`,
      `--http=127.0.0.1:${s.httpPort ?? 8471}`,
      // the node's lease record stays in the lab, whatever the registry
      `--state-dir=${lab.dir}/state`,
      ...(s.extra ?? []),
    ],
    s.env,
  );
}

export async function status(lab: Lab, ns: string, port = 8471): Promise<AgentStatus> {
  const r = await lab.http(ns, "/v1/status", port);
  if (r.status !== 200) throw new Error(`/v1/status answered ${r.status}`);
  return JSON.parse(r.body) as AgentStatus;
}

/** Waits for /readyz 200; on timeout the error carries the agent's log. */
export async function waitReady(
  lab: Lab,
  ns: string,
  p: LabProcess,
  port = 8471,
  ms = 20_000,
): Promise<void> {
  try {
    await until(
      async () => {
        if (p.proc.exitCode !== null || p.proc.signalCode !== null)
          throw new StopPolling(`agent ${p.name} exited with ${p.proc.exitCode ?? p.proc.signalCode}`);
        return (await lab.http(ns, "/readyz", port)).status === 200;
      },
      `${p.name} /readyz`,
      ms,
    );
  } catch (e) {
    throw new Error(`${(e as Error).message}\n--- ${p.name} log ---\n${await lab.log(p)}`);
  }
}
