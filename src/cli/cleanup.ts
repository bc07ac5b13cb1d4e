/**
 * `tartan cleanup`: removes every trace Tartan put on a node — eBPF programs, pins and the
 * overlay device, the kernel vxlan device (its routes, neighbours and FDB entries go
 * with it), host-gw routes, the ip-masq nft table, the CNI plugin's state — and
 * subnet.env only when asked. Safe to run twice: the second run finds nothing.
 */
import { existsSync, rmSync } from "node:fs";
import { hostname } from "node:os";
import * as v from "valibot";
import { runningAgent, subnetFileLock } from "../agent/lock.ts";
import { type Cidr, containsCidr, formatCidr, parseCidr } from "../config/cidr.ts";
import { DEFAULT_SUBNET_FILE } from "../config/options.ts";
import { readSubnetEnv } from "../config/subnet-env.ts";
import { errorText, type Logger } from "../log.ts";
import { removeBatch } from "../net/batch.ts";
import { deleteLink, listRoutes } from "../net/ip.ts";
import { removeEmptyNatTable, removeMasq } from "../net/masq.ts";
import { ValidationError } from "../validation.ts";
import { type FlagDef, parseFlags } from "./flags.ts";
import { flagsHelp } from "./help.ts";
import { validateFlags } from "./options.ts";

export const DEFAULT_CNI_DATA_DIR = "/var/lib/cni/flannel";
export const DEFAULT_CNI_IPAM_DIR = "/var/lib/cni/networks/cbr0";
export const DEFAULT_CNI_CONF = "/etc/cni/net.d/10-tartan.conflist";
export const DEFAULT_CNI_BIN = "/opt/cni/bin/tartan";

export const CLEANUP_FLAGS: FlagDef[] = [
  {
    name: "subnet-file",
    kind: "string",
    default: DEFAULT_SUBNET_FILE,
    help: "subnet.env the agent wrote (tells the cluster network)",
  },
  {
    name: "remove-subnet-file",
    kind: "boolean",
    help: "also delete subnet.env (Docker and the CNI plugin need it while pods run)",
  },
  {
    name: "node-name",
    kind: "string",
    help: "node name (default: the host name); picks the default --bpffs",
  },
  {
    name: "bpffs",
    kind: "string",
    help: "pin directory of the eBPF datapath (default /sys/fs/bpf/tartan/<node-name>)",
  },
  { name: "vni", kind: "string", default: "1", help: "VNI of the vxlan and ebpf-vxlan devices" },
  {
    name: "network",
    kind: "string",
    help: "cluster network whose host-gw routes to remove (default: FLANNEL_NETWORK from subnet.env)",
  },
  {
    name: "cni-data-dir",
    kind: "string",
    default: DEFAULT_CNI_DATA_DIR,
    help: "the CNI plugin's per-container state",
  },
  {
    name: "cni-ipam-dir",
    kind: "string",
    default: DEFAULT_CNI_IPAM_DIR,
    help: "host-local's address reservations for the cbr0 network",
  },
  {
    name: "cni-conf-file",
    kind: "string",
    default: DEFAULT_CNI_CONF,
    help: "the conflist the DaemonSet installed",
  },
  {
    name: "cni-bin",
    kind: "string",
    default: DEFAULT_CNI_BIN,
    help: "the plugin binary the DaemonSet installed",
  },
  { name: "bridge", kind: "string", default: "cni0", help: "the pod bridge (removed with its address)" },
  {
    name: "docker-env",
    kind: "string",
    default: "/run/docker_opts.env",
    help: "Docker options file, removed with --remove-subnet-file",
  },
  {
    name: "force",
    kind: "boolean",
    help: "clean up even while an agent runs here (it rebuilds its datapath within seconds)",
  },
  { name: "help", short: "h", kind: "boolean", help: "show this help" },
];

const Schema = v.object({
  "subnet-file": v.optional(v.string(), DEFAULT_SUBNET_FILE),
  "remove-subnet-file": v.optional(v.boolean(), false),
  "node-name": v.optional(v.string()),
  bpffs: v.optional(v.pipe(v.string(), v.regex(/^\//, "--bpffs must be an absolute path"))),
  vni: v.optional(
    v.pipe(
      v.string(),
      v.check((s) => /^\d+$/.test(s) && Number(s) <= 0xffffff, "--vni must be 0..16777215"),
      v.transform(Number),
    ),
    "1",
  ),
  network: v.optional(
    v.pipe(
      v.string(),
      v.check((s) => parseCidr(s) !== null, "--network must be a CIDR like 10.244.0.0/16"),
    ),
  ),
  "cni-data-dir": v.optional(v.string(), DEFAULT_CNI_DATA_DIR),
  "cni-ipam-dir": v.optional(v.string(), DEFAULT_CNI_IPAM_DIR),
  "cni-conf-file": v.optional(v.string(), DEFAULT_CNI_CONF),
  "cni-bin": v.optional(v.string(), DEFAULT_CNI_BIN),
  bridge: v.optional(
    v.pipe(v.string(), v.regex(/^[A-Za-z0-9._-]{1,15}$/, "--bridge must be an interface name")),
    "cni0",
  ),
  "docker-env": v.optional(v.string(), "/run/docker_opts.env"),
  force: v.optional(v.boolean(), false),
  help: v.optional(v.boolean(), false),
});

export function cleanupHelp(): string {
  return flagsHelp(
    "tartan cleanup [flags]",
    "Remove everything Tartan put on this node: eBPF programs and pins, overlay and vxlan devices (with their\nroutes, neighbours and FDB entries), host-gw routes, the ip-masq nft table, the pod bridge, the CNI plugin,\nits config and state. Stop the agent and remove the pods first (it refuses while an agent runs, unless\n--force). Safe to run twice.",
    CLEANUP_FLAGS,
  );
}

export async function runCleanup(
  argv: readonly string[],
  log: Logger,
  out: (s: string) => void,
): Promise<number> {
  const { flags, positionals } = parseFlags("cleanup", argv, CLEANUP_FLAGS, {});
  if (positionals.length)
    throw new ValidationError(`tartan cleanup takes no arguments (got ${JSON.stringify(positionals[0])})`);
  const o = validateFlags(Schema, flags);
  if (o.help) {
    out(`${cleanupHelp()}\n`);
    return 0;
  }
  const node = o["node-name"] ?? hostname().split(".")[0] ?? "node";
  const bpffs = o.bpffs ?? `/sys/fs/bpf/tartan/${node}`;
  // a running agent would rebuild what we remove (and lose traffic meanwhile): refuse
  const agent = runningAgent(o["subnet-file"], bpffs);
  if (agent && !o.force)
    throw new Error(
      `an agent is running on this node (${agent}); stop it first (systemctl stop tartan), or pass --force`,
    );
  if (agent) out(`--force: an agent is running (${agent}); removing its datapath under it\n`);
  const env = readSubnetEnv(o["subnet-file"]);
  const network: Cidr | null = o.network ? parseCidr(o.network) : env.kind === "ok" ? env.env.network : null;
  const done: string[] = [];
  let failures = 0;
  const step = async (what: string, fn: () => Promise<string | null>) => {
    try {
      const r = await fn();
      if (r) done.push(r);
    } catch (e) {
      failures++;
      log.error(`cleanup: ${what} failed`, { error: errorText(e) });
    }
  };

  await step("eBPF datapath", async () => {
    const { cleanupEbpfVxlan } = await import("../backend/ebpf-vxlan/index.ts");
    const had = existsSync(bpffs);
    await cleanupEbpfVxlan({ log, bpffs, vni: o.vni });
    return had ? `eBPF programs, overlay device and pins under ${bpffs}` : null;
  });
  await step("vxlan device", async () => {
    const { cleanupVxlan } = await import("../backend/vxlan/index.ts");
    return (await cleanupVxlan(o.vni))
      ? `vxlan device flannel.${o.vni} (with its routes, neighbours and FDB entries)`
      : null;
  });
  await step("host-gw routes", async () => {
    if (!network) return null;
    const routes = (await listRoutes()).filter((r) => {
      const c = r.dst === "default" ? null : parseCidr(r.dst.includes("/") ? r.dst : `${r.dst}/32`, false);
      return c !== null && r.gateway !== undefined && containsCidr(network, c);
    });
    await removeBatch(
      "ip",
      routes.map((r) => `route del ${r.dst} via ${r.gateway}${r.dev ? ` dev ${r.dev}` : ""}`),
    );
    return routes.length ? `${routes.length} host-gw route(s) into ${formatCidr(network)}` : null;
  });
  await step("ip-masq table", async () => ((await removeMasq()) ? "nft table ip tartan" : null));
  await step("empty nat table", async () =>
    (await removeEmptyNatTable()) ? "empty nft table ip nat the bridge plugin's masquerading left" : null,
  );
  await step("pod bridge", async () => ((await deleteLink(o.bridge)) ? `pod bridge ${o.bridge}` : null));
  for (const [what, path] of [
    ["CNI plugin state", o["cni-data-dir"]],
    ["CNI address reservations", o["cni-ipam-dir"]],
    ["CNI config", o["cni-conf-file"]],
    ["CNI plugin binary", o["cni-bin"]],
  ] as const)
    await step(what, async () => {
      if (!existsSync(path)) return null;
      rmSync(path, { recursive: true, force: true });
      return `${what} ${path}`;
    });
  if (o["remove-subnet-file"])
    // the lock file goes too, unless a (forced-over) agent still holds it
    for (const path of [
      o["subnet-file"],
      ...(agent ? [] : [subnetFileLock(o["subnet-file"])]),
      o["docker-env"],
    ])
      await step(path, async () => {
        if (!existsSync(path)) return null;
        rmSync(path);
        return `file ${path}`;
      });

  if (done.length === 0 && failures === 0) out("nothing to remove: no Tartan state on this node\n");
  for (const d of done) out(`removed ${d}\n`);
  if (!network)
    out(
      `note: no cluster network known (no ${o["subnet-file"]}, no --network), so host-gw routes were not looked for\n`,
    );
  return failures ? 1 : 0;
}
