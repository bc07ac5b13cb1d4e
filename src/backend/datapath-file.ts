/**
 * Where the running agent's datapath lives, for other processes on the node: the agent
 * writes a small JSON file next to its subnet file once its backend is prepared (before
 * subnet.env, so any pod that gets an address finds it), and the CNI plugin — which
 * already knows the subnet file from its config — reads it to find the endpoint map.
 * Nothing to configure and nothing derived from the host name, so an agent run with
 * `--node-name=$(NODE_NAME)` or its own `--bpffs` is found all the same. The file
 * is named after the subnet file: /run/flannel/subnet.env → /run/flannel/subnet.datapath.json.
 */
import { readFileSync } from "node:fs";
import { basename, dirname, isAbsolute, join } from "node:path";
import * as v from "valibot";
import { BACKENDS, type BackendName } from "../config/network.ts";
import { writeFileAtomic } from "../files.ts";
import { issuesText } from "../validation.ts";

export interface DatapathInfo {
  readonly version: 1;
  /** The agent's --node-name. */
  readonly node: string;
  readonly backend: BackendName;
  /** The pin directory of the eBPF datapath (ebpf-vxlan only), else null. */
  readonly bpffs: string | null;
}

const DatapathSchema = v.object({
  version: v.literal(1, "version must be 1"),
  node: v.pipe(v.string("node must be a string"), v.minLength(1, "node must not be empty")),
  backend: v.picklist(BACKENDS, `backend must be one of ${BACKENDS.join(", ")}`),
  bpffs: v.nullable(
    v.pipe(
      v.string("bpffs must be a path"),
      v.check((s) => isAbsolute(s), "bpffs must be an absolute path"),
    ),
  ),
});

/** The datapath file that goes with a subnet file: its name with `.env` replaced by `.datapath.json`. */
export function datapathFileFor(subnetFile: string): string {
  return join(dirname(subnetFile), `${basename(subnetFile).replace(/\.env$/, "")}.datapath.json`);
}

/** What the agent publishes about the datapath of `backend`. */
export function describeDatapath(o: { backend: BackendName; node: string; bpffs: string }): DatapathInfo {
  return { version: 1, node: o.node, backend: o.backend, bpffs: o.backend === "ebpf-vxlan" ? o.bpffs : null };
}

/** Writes (atomically) the datapath file next to `subnetFile`; returns its path. */
export function publishDatapath(subnetFile: string, o: Parameters<typeof describeDatapath>[0]): string {
  const path = datapathFileFor(subnetFile);
  writeFileAtomic(path, `${JSON.stringify(describeDatapath(o))}\n`);
  return path;
}

export type ReadDatapath =
  | { readonly kind: "ok"; readonly path: string; readonly info: DatapathInfo }
  | { readonly kind: "missing"; readonly path: string }
  | { readonly kind: "invalid"; readonly path: string; readonly reason: string };

export function readDatapathFile(subnetFile: string): ReadDatapath {
  const path = datapathFileFor(subnetFile);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return { kind: "missing", path };
    return { kind: "invalid", path, reason: (e as Error).message };
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    return { kind: "invalid", path, reason: `not JSON (${(e as Error).message})` };
  }
  const r = v.safeParse(DatapathSchema, doc);
  if (!r.success) return { kind: "invalid", path, reason: issuesText(r.issues) };
  return { kind: "ok", path, info: r.output };
}
