/** --help text, generated from the flag definitions so it cannot drift from the parser. */
import type { FlagDef } from "./flags.ts";
import { envName } from "./flags.ts";

export const COMMANDS: { name: string; summary: string }[] = [
  { name: "agent", summary: "run the node agent: lease a subnet, program the datapath, serve /healthz" },
  { name: "leases [delete SUBNET]", summary: "list the leases in the registry, or delete one" },
  { name: "config get", summary: "print the network config stored in the registry" },
  {
    name: "config set FILE",
    summary: "validate FILE (flannel's net-conf.json) and store it in the registry",
  },
  { name: "status", summary: "show a running agent's state (lease, peers, health, datapath counters)" },
  { name: "cni", summary: "act as the CNI plugin (what /opt/cni/bin/tartan does with CNI_COMMAND set)" },
  {
    name: "docker-opts",
    summary: "write Docker daemon options from subnet.env (flannel's mk-docker-opts.sh)",
  },
  {
    name: "cleanup",
    summary:
      "remove everything Tartan put on this node (programs, pins, devices, routes, nft table, CNI state)",
  },
  { name: "version", summary: "print the version" },
  { name: "help", summary: "show this help, or `tartan help COMMAND`" },
];

export function mainHelp(): string {
  const w = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    "tartan — overlay network agent with an eBPF VXLAN datapath; a drop-in for flanneld.",
    "",
    "Usage: tartan COMMAND [flags]",
    "",
    "Commands:",
    ...COMMANDS.map((c) => `  ${c.name.padEnd(w)}  ${c.summary}`),
    "",
    "Flags take one or two dashes (-etcd-endpoints=… as flanneld, or --etcd-endpoints …);",
    "flanneld's flags can also come from FLANNELD_* environment variables (the command line wins).",
    "",
    "Quick start on one host:",
    "  tartan config set net-conf.json --registry=sqlite:/var/lib/tartan/registry.db",
    "  tartan agent --backend=ebpf-vxlan --iface=eth0",
    "  curl -s 127.0.0.1:8471/readyz",
    "",
    "Run `tartan help COMMAND` for a command's flags.",
  ].join("\n");
}

export function flagsHelp(
  usage: string,
  summary: string,
  defs: readonly FlagDef[],
  extra: string[] = [],
): string {
  const rows = defs.map((d) => {
    const name = `${d.short ? `-${d.short}, ` : ""}--${d.name}${d.kind === "boolean" ? "" : d.kind === "list" ? "=VALUE (repeatable)" : "=VALUE"}`;
    const notes: string[] = [];
    if (d.default !== undefined) notes.push(`default ${d.default}`);
    if (d.env) notes.push(`env ${envName(d.name)}`);
    return { name, help: d.help + (notes.length ? ` [${notes.join("; ")}]` : "") };
  });
  const w = Math.min(44, Math.max(...rows.map((r) => r.name.length)));
  return [
    `Usage: ${usage}`,
    "",
    summary,
    "",
    "Flags:",
    ...rows.map((r) =>
      r.name.length > w ? `  ${r.name}\n  ${"".padEnd(w)}  ${r.help}` : `  ${r.name.padEnd(w)}  ${r.help}`,
    ),
    ...(extra.length ? ["", ...extra] : []),
  ].join("\n");
}
