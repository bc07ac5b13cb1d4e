/**
 * `tartan cleanup`: removes every trace Tartan put on a node — eBPF programs, pins and the
 * overlay device, the kernel vxlan devices (their routes, neighbours and FDB entries go
 * with them), host-gw routes (IPv6 ones too on a dual-stack node), the ip-masq nft
 * tables, the CNI plugin's state — and
 * subnet.env only when asked. Safe to run twice: the second run finds nothing.
 */
import { existsSync, rmSync } from "node:fs";
import { hostname } from "node:os";
import { runningAgent, subnetFileLock } from "../agent/lock.ts";
import { datapathFileFor } from "../backend/datapath-file.ts";
import { type Cidr, containsCidr, formatCidr, parseCidr } from "../config/cidr.ts";
import { containsCidr6, formatCidr6, parseCidr6 } from "../config/cidr6.ts";
import { readSubnetEnv } from "../config/subnet-env.ts";
import { errorText, type Logger } from "../log.ts";
import { removeBatch } from "../net/batch.ts";
import { deleteLink, ipJson, listRoutes, type Route } from "../net/ip.ts";
import { removeEmptyNatTable, removeMasq } from "../net/masq.ts";
import { type Command, noArguments } from "./command.ts";
import { DOCKER_ENV_FLAG } from "./docker-opts.ts";
import { booleanFlag, type FlagSet, stringFlag, validateFlags, withHelp } from "./flag-def.ts";
import type { ParsedArgs } from "./flags.ts";
import { BRIDGE_FLAG, FLANNELD_AGENT_FLAGS, HELP_FLAG, TARTAN_AGENT_FLAGS } from "./options.ts";
import { cidr, wholeNumber } from "./values.ts";

export const DEFAULT_CNI_DATA_DIR = "/var/lib/cni/flannel";
export const DEFAULT_CNI_IPAM_DIR = "/var/lib/cni/networks/cbr0";
export const DEFAULT_CNI_CONF = "/etc/cni/net.d/10-tartan.conflist";
export const DEFAULT_CNI_BIN = "/opt/cni/bin/tartan";

export const CLEANUP_FLAGS = {
  "subnet-file": withHelp(
    FLANNELD_AGENT_FLAGS["subnet-file"],
    "subnet.env the agent wrote (tells the cluster network)",
    { env: false },
  ),
  "remove-subnet-file": booleanFlag({
    help: "also delete subnet.env (Docker and the CNI plugin need it while pods run)",
  }),
  "node-name": withHelp(TARTAN_AGENT_FLAGS["node-name"], "node name; picks the default --bpffs"),
  bpffs: withHelp(TARTAN_AGENT_FLAGS.bpffs, "pin directory of the eBPF datapath"),
  vni: stringFlag({
    default: "1",
    value: wholeNumber(0, 0xffffff, "0..16777215"),
    help: "VNI of the vxlan and ebpf-vxlan devices",
  }),
  network: stringFlag({
    value: cidr,
    shownDefault: "FLANNEL_NETWORK from subnet.env",
    help: "cluster network whose host-gw routes to remove",
  }),
  "cni-data-dir": stringFlag({ default: DEFAULT_CNI_DATA_DIR, help: "the CNI plugin's per-container state" }),
  "cni-ipam-dir": stringFlag({
    default: DEFAULT_CNI_IPAM_DIR,
    help: "host-local's address reservations for the cbr0 network",
  }),
  "cni-conf-file": stringFlag({ default: DEFAULT_CNI_CONF, help: "the conflist the DaemonSet installed" }),
  "cni-bin": stringFlag({ default: DEFAULT_CNI_BIN, help: "the plugin binary the DaemonSet installed" }),
  bridge: withHelp(BRIDGE_FLAG, "the pod bridge (removed with its address)"),
  "docker-env": withHelp(DOCKER_ENV_FLAG, "Docker options file, removed with --remove-subnet-file", {
    short: undefined,
  }),
  force: booleanFlag({
    help: "clean up even while an agent runs here (it rebuilds its datapath within seconds)",
  }),
  ...HELP_FLAG,
} satisfies FlagSet;

export const cleanupCommand: Command = {
  name: "cleanup",
  summary:
    "remove everything Tartan put on this node (programs, pins, devices, routes, nft table, CNI state)",
  usage: "tartan cleanup [flags]",
  about: [
    "Remove everything Tartan put on this node: eBPF programs and pins, overlay and vxlan devices (with their",
    "routes, neighbours and FDB entries), host-gw routes, the ip-masq nft table, the pod bridge, the CNI plugin,",
    "its config and state. Stop the agent and remove the pods first (it refuses while an agent runs, unless",
    "--force). Safe to run twice.",
  ].join("\n"),
  flags: CLEANUP_FLAGS,
  run: (p, io) => runCleanup(p, io.log, io.out),
};

export async function runCleanup(p: ParsedArgs, log: Logger, out: (s: string) => void): Promise<number> {
  noArguments("cleanup", p.positionals);
  const o = validateFlags(CLEANUP_FLAGS, p.flags);
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
    // the backend logs each step at info whether or not there was anything to remove;
    // collect them and say only what was really there, once, on stdout
    const seen: string[] = [];
    const record: Logger = { ...log, info: (msg) => void seen.push(msg), with: () => record };
    await cleanupEbpfVxlan({ log: record, bpffs, vni: o.vni });
    const removed = [
      seen.some((m) => m.startsWith("detached")) ? "eBPF programs" : null,
      seen.includes("deleted overlay device") ? "overlay device" : null,
      had ? `pins under ${bpffs}` : null,
    ].filter((x) => x !== null);
    return removed.length ? removed.join(", ") : null;
  });
  await step("vxlan device", async () => {
    const { cleanupVxlan } = await import("../backend/vxlan/index.ts");
    const devs = await cleanupVxlan(o.vni);
    return devs.length > 0
      ? `vxlan device ${devs.join(", ")} (with ${devs.length > 1 ? "their" : "its"} routes, neighbours and FDB entries)`
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
  await step("host-gw IPv6 routes", async () => {
    // a dual-stack node's subnet.env names the IPv6 network
    const network6 = env.kind === "ok" ? (env.env.network6 ?? null) : null;
    if (!network6) return null;
    const routes = (await ipJson<Route>("-6", "route", "show")).filter((r) => {
      const c = r.dst === "default" ? null : parseCidr6(r.dst.includes("/") ? r.dst : `${r.dst}/128`, false);
      return c !== null && r.gateway !== undefined && containsCidr6(network6, c);
    });
    await removeBatch(
      "ip",
      routes.map((r) => `route del ${r.dst} via ${r.gateway}${r.dev ? ` dev ${r.dev}` : ""}`),
    );
    return routes.length ? `${routes.length} host-gw route(s) into ${formatCidr6(network6)}` : null;
  });
  await step("ip-masq table", async () => {
    const tables = await removeMasq();
    return tables.length > 0 ? `nft table ${tables.join(", ")}` : null;
  });
  await step("empty nat table", async () =>
    (await removeEmptyNatTable()) ? "empty nft table ip nat the bridge plugin's masquerading left" : null,
  );
  await step("pod bridge", async () => ((await deleteLink(o.bridge)) ? `pod bridge ${o.bridge}` : null));
  for (const [what, path] of [
    // where the agent told the CNI plugin its datapath is: gone with the datapath
    ["datapath file", datapathFileFor(o["subnet-file"])],
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
