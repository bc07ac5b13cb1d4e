/**
 * `tartan doctor [--fix] [--json]`: parses the flags, runs the checks (src/doctor/run.ts)
 * and prints the report. Flags that mean the same as the agent's are the agent's (the same
 * declarations, validated by the same code); doctor adds --fix, --json, --strict,
 * --cni-conf-dir, --bridge and the probe flags.
 */
import { formatReport } from "../doctor/report.ts";
import { DEFAULT_CNI_CONF_DIR, type DoctorRunOptions, runChecks } from "../doctor/run.ts";
import { SHARED_SETTINGS } from "../doctor/settings.ts";
import { type Command, noArguments } from "./command.ts";
import {
  booleanFlag,
  type FlagDef,
  type FlagSet,
  type RawFlags,
  stringFlag,
  validateFlags,
} from "./flag-def.ts";
import { type ParsedArgs, parseFlags } from "./flags.ts";
import { AGENT_FLAGS, agentOptionsFrom, BRIDGE_FLAG, HELP_FLAG } from "./options.ts";
import { absolutePath, wholeNumber } from "./values.ts";

/** Help text doctor gives a shared agent flag, where it means something more to doctor. */
const SHARED_HELP: Record<string, string> = {
  backend: "the backend to check the datapath of (default: the running agent's, else the network config's)",
  iface: "underlay interface (name or IPv4) as given to the agent; repeatable",
  "public-ip": "this node's PublicIP, to find its lease (default: the interface's address)",
  "subnet-file": "the subnet environment file to check, and rewrite with --fix",
  "ip-masq": "expect the --ip-masq nftables table (default: the running agent's setting, else subnet.env)",
  http: "HOST:PORT of the running agent, asked for its effective options, lease and leases",
  bpffs: "bpffs directory of the ebpf-vxlan pins (default: the agent's, else /sys/fs/bpf/tartan/<node-name>)",
};
const SHARED: ReadonlySet<string> = new Set(SHARED_SETTINGS);

const OWN_FLAGS = {
  fix: booleanFlag({ help: "repair what is safe to repair, say exactly what changed, then check again" }),
  json: booleanFlag({ help: "print the report as JSON (the shape GET /v1/doctor serves)" }),
  strict: booleanFlag({ help: "exit non-zero on warnings too" }),
  "cni-conf-dir": stringFlag({
    default: DEFAULT_CNI_CONF_DIR,
    value: absolutePath,
    help: "CNI config directory to look for conflicting files in",
  }),
  bridge: BRIDGE_FLAG,
  probe: booleanFlag({
    default: true,
    help: "ping every peer's VTEP through the overlay (--no-probe skips it)",
  }),
  "probe-timeout": stringFlag({
    default: "1",
    value: wholeNumber(1, 30, "1..30 seconds"),
    help: "seconds to wait for each probe answer (1-30)",
  }),
  ...HELP_FLAG,
} satisfies FlagSet;

/** The agent's flags doctor shares, with doctor's wording where it differs. */
const SHARED_FLAGS: FlagSet = Object.fromEntries(
  Object.entries(AGENT_FLAGS as FlagSet)
    .filter(([name]) => SHARED.has(name))
    .map(([name, d]): [string, FlagDef] => [
      name,
      SHARED_HELP[name] ? { ...d, help: SHARED_HELP[name]! } : d,
    ]),
);

export const DOCTOR_FLAGS: FlagSet = { ...OWN_FLAGS, ...SHARED_FLAGS };

export interface ParsedDoctor {
  readonly help: boolean;
  readonly json: boolean;
  readonly run: DoctorRunOptions;
}

function doctorArgsFrom(
  p: ParsedArgs,
  env: Readonly<Record<string, string | undefined>> = process.env,
): ParsedDoctor {
  noArguments("doctor", p.positionals);
  const o = validateFlags(OWN_FLAGS, p.flags, p.fromEnv);
  const shared: RawFlags = {};
  for (const name of SHARED) shared[name] = p.flags[name];
  // parsed and defaulted exactly as the agent would be, from the shared flags alone
  const agent = agentOptionsFrom({ flags: shared, positionals: [], fromEnv: p.fromEnv }, env);
  const explicit = new Set([...SHARED].filter((k) => p.flags[k] !== undefined));
  return {
    help: o.help,
    json: o.json,
    run: {
      input: { agent, explicit, bridge: o.bridge, cniConfDir: o["cni-conf-dir"] },
      fix: o.fix,
      strict: o.strict,
      probe: o.probe,
      probeTimeoutS: o["probe-timeout"],
    },
  };
}

export function parseDoctorArgs(
  argv: readonly string[],
  env: Record<string, string | undefined> = process.env,
): ParsedDoctor {
  return doctorArgsFrom(parseFlags("doctor", argv, DOCTOR_FLAGS, env), env);
}

export const doctorCommand: Command = {
  name: "doctor",
  summary: "check this node for what breaks overlay networks; --fix repairs what is safe",
  usage: "tartan doctor [--fix] [--json] [flags]",
  about: [
    "Check this node for what breaks overlay networks, and say what is wrong in words: the pod bridge's",
    "address vs the lease, subnet.env, the registry and our lease, the datapath (vxlan device or eBPF",
    "programs and pins), every remote lease programmed and nothing stale, the MTU chain, ip_forward,",
    "rp_filter, br_netfilter, the FORWARD policy, --ip-masq rules, CNI config files that win over ours,",
    "the VXLAN checksum-offload bug, and a ping through the overlay to every peer. Run it as root on",
    "the node (in the node's network namespace); it asks the running agent (--http) for its settings.",
  ].join("\n"),
  flags: DOCTOR_FLAGS,
  env: true,
  notes: [
    "Exit code: 0 when no check is a problem (warnings are printed but allowed; --strict fails on them),",
    "1 when any check is a problem, 2 for bad flags.",
    "",
    "--fix only repairs what is safe: re-address the bridge from the lease, rewrite subnet.env, add missing",
    "and delete stale routes/neighbours/FDB entries, reset the overlay MTU, set ip_forward/rp_filter/",
    "bridge-nf-call-iptables, re-apply the ip-masq table, accept the cluster network in a dropping FORWARD",
    "chain, turn off checksum offload where the kernel is affected. It prints every change, then checks again.",
    "",
    "Examples:",
    "  tartan doctor                          # ask the agent on 127.0.0.1:8471, check everything",
    "  tartan doctor --fix                    # repair what is safe, then check again",
    "  tartan doctor --json --no-probe        # for tools; skip the peer probes",
    "  tartan doctor --registry=sqlite:/var/lib/tartan/registry.db --iface=eth0 --backend=vxlan",
    "Docs: docs/doctor.md describes every check, what it looks at, and what --fix does.",
  ],
  async run(p, io) {
    const d = doctorArgsFrom(p, io.env);
    const report = await runChecks(d.run);
    io.out(d.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
    return report.exitCode;
  },
};
