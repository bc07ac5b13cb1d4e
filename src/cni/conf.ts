/**
 * The CNI plugin's inputs, validated once: the CNI_* environment of the invocation and
 * the network config on stdin (flannel's plugin config: `subnetFile`, `dataDir`,
 * `delegate`, `ipam`, `runtimeConfig`, `prevResult`). Bad input becomes a CniError with
 * the spec's code: 6 undecodable JSON, 1 unsupported cniVersion, 7 invalid config, 4 bad env.
 */
import { isAbsolute } from "node:path";
import * as v from "valibot";
import { parseCidr, parseIp4 } from "../config/cidr.ts";
import { DEFAULT_SUBNET_FILE } from "../config/options.ts";
import { issuesText } from "../validation.ts";
import { CNI_ERR, CniError } from "./errors.ts";
import { type CniVersion, negotiate } from "./version.ts";

/** flannel's CNI data dir: pods added by flannel's plugin can be deleted by Tartan's, and back. */
export const DEFAULT_DATA_DIR = "/var/lib/cni/flannel";
/** The bridge the delegate gets (flannel's cni0): the one the backends follow. */
export { DEFAULT_BRIDGE } from "../backend/facts.ts";

export const COMMANDS = ["ADD", "DEL", "CHECK", "VERSION"] as const;
export type CniCommand = (typeof COMMANDS)[number];

export interface CniEnv {
  readonly command: CniCommand;
  readonly containerId: string;
  readonly netns: string;
  readonly ifname: string;
  readonly args: string;
  /** CNI_PATH split on ':' (empty entries dropped). */
  readonly path: string[];
}

/** Container ids are used as file names: the runtime's ids are [A-Za-z0-9][A-Za-z0-9_.-]*. */
const CONTAINER_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const IFNAME_RE = /^[^\s/:]{1,15}$/;

/**
 * Reads the CNI_* variables the spec requires for `command` (VERSION needs none).
 * Throws code 4 naming the variable.
 */
export function parseCniEnv(env: Record<string, string | undefined>): CniEnv {
  const cmd = env.CNI_COMMAND;
  if (!cmd) throw new CniError(CNI_ERR.INVALID_ENV, "CNI_COMMAND is not set");
  if (!(COMMANDS as readonly string[]).includes(cmd))
    throw new CniError(
      CNI_ERR.INVALID_ENV,
      `unknown CNI_COMMAND: ${JSON.stringify(cmd)} (supported: ${COMMANDS.join(", ")})`,
    );
  const command = cmd as CniCommand;
  const need = (name: string, required: boolean): string => {
    const val = env[name] ?? "";
    if (required && val === "") throw new CniError(CNI_ERR.INVALID_ENV, `${name} is required for ${command}`);
    return val;
  };
  const isVersion = command === "VERSION";
  const containerId = need("CNI_CONTAINERID", !isVersion);
  if (containerId && !CONTAINER_ID_RE.test(containerId))
    throw new CniError(
      CNI_ERR.INVALID_ENV,
      `CNI_CONTAINERID=${JSON.stringify(containerId)} must be letters, digits, '_', '.' or '-'`,
    );
  const ifname = need("CNI_IFNAME", !isVersion);
  if (ifname && !IFNAME_RE.test(ifname))
    throw new CniError(
      CNI_ERR.INVALID_ENV,
      `CNI_IFNAME=${JSON.stringify(ifname)} must be an interface name (1-15 characters, no '/', ':' or space)`,
    );
  const netns = need("CNI_NETNS", command === "ADD" || command === "CHECK");
  const path = need("CNI_PATH", !isVersion)
    .split(":")
    .filter((p) => p !== "");
  return { command, containerId, netns, ifname, args: env.CNI_ARGS ?? "", path };
}

const absPath = (field: string) =>
  v.pipe(
    v.string(`${field} must be a string`),
    v.check((s) => isAbsolute(s), `${field} must be an absolute path`),
  );

const RouteSchema = v.looseObject({
  dst: v.pipe(
    v.string(),
    v.check((s) => parseCidr(s, false) !== null || s.includes(":"), "dst must be a CIDR like 10.0.0.0/8"),
  ),
  gw: v.optional(
    v.pipe(
      v.string(),
      v.check((s) => parseIp4(s) !== null || s.includes(":"), "gw must be an IP address"),
    ),
  ),
});

const DelegateSchema = v.pipe(
  v.record(v.string(), v.unknown()),
  v.check(
    (d) => d.type === undefined || (typeof d.type === "string" && d.type !== ""),
    "delegate.type must be a plugin name (a string)",
  ),
  v.check((d) => !("name" in d), "delegate must not have a name field: it is set from the network name"),
  v.check((d) => !("ipam" in d), "delegate must not have an ipam field: it is built from subnet.env"),
);

export const NetConfSchema = v.looseObject({
  cniVersion: v.string("cniVersion must be a string"),
  name: v.pipe(
    v.string("name must be a string"),
    v.regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, "name must be letters, digits, '_', '.' or '-'"),
  ),
  type: v.pipe(v.string("type must be a string"), v.minLength(1, "type must name this plugin")),
  subnetFile: v.optional(absPath("subnetFile"), DEFAULT_SUBNET_FILE),
  dataDir: v.optional(absPath("dataDir"), DEFAULT_DATA_DIR),
  delegate: v.optional(DelegateSchema),
  ipam: v.optional(
    v.looseObject({
      type: v.optional(v.pipe(v.string(), v.minLength(1))),
      routes: v.optional(v.array(RouteSchema, "ipam.routes must be a list of {dst, gw}")),
    }),
  ),
  runtimeConfig: v.optional(v.record(v.string(), v.unknown())),
  prevResult: v.optional(v.record(v.string(), v.unknown())),
});

export type NetConf = v.InferOutput<typeof NetConfSchema> & { readonly cniVersion: CniVersion };

/** Parses stdin to a JSON object (code 6 when it is not one). */
export function decodeStdin(stdin: string): Record<string, unknown> {
  let obj: unknown;
  try {
    obj = JSON.parse(stdin);
  } catch (e) {
    throw new CniError(
      CNI_ERR.DECODE_FAILURE,
      `network config on stdin is not JSON: ${(e as Error).message}`,
      stdin.length > 200 ? `${stdin.slice(0, 200)}…` : stdin,
    );
  }
  if (typeof obj !== "object" || obj === null || Array.isArray(obj))
    throw new CniError(CNI_ERR.DECODE_FAILURE, "network config on stdin must be a JSON object");
  return obj as Record<string, unknown>;
}

/** The whole stdin path: decode (6), version (1), schema (7). */
export function parseNetConf(stdin: string): NetConf {
  const obj = decodeStdin(stdin);
  const version = negotiate(obj.cniVersion);
  const r = v.safeParse(NetConfSchema, obj);
  if (!r.success)
    throw new CniError(CNI_ERR.INVALID_CONFIG, `invalid network config: ${issuesText(r.issues)}`);
  return { ...r.output, cniVersion: version };
}
