/**
 * `tartan doctor [--fix] [--json]`: parses the flags, runs the checks (src/doctor/run.ts)
 * and prints the report. Flags that mean the same as the agent's are the agent's (parsed
 * and validated by the same code); doctor adds --fix, --json, --strict, --cni-conf-dir,
 * --bridge and the probe flags.
 */
import * as v from "valibot";
import { DEFAULT_BRIDGE } from "../cni/conf.ts";
import { formatReport } from "../doctor/report.ts";
import { DEFAULT_CNI_CONF_DIR, type DoctorRunOptions, runChecks } from "../doctor/run.ts";
import { SHARED_SETTINGS } from "../doctor/settings.ts";
import { ValidationError } from "../validation.ts";
import { type FlagDef, parseFlags, type RawFlags } from "./flags.ts";
import { flagsHelp } from "./help.ts";
import { ALL_AGENT_FLAGS, parseAgentOptions, validateFlags } from "./options.ts";

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

const OWN_FLAGS: FlagDef[] = [
  {
    name: "fix",
    kind: "boolean",
    help: "repair what is safe to repair, say exactly what changed, then check again",
  },
  { name: "json", kind: "boolean", help: "print the report as JSON (the shape GET /v1/doctor serves)" },
  { name: "strict", kind: "boolean", help: "exit non-zero on warnings too" },
  {
    name: "cni-conf-dir",
    kind: "string",
    default: DEFAULT_CNI_CONF_DIR,
    help: "CNI config directory to look for conflicting files in",
  },
  { name: "bridge", kind: "string", default: DEFAULT_BRIDGE, help: "the pod bridge the CNI plugin uses" },
  {
    name: "probe",
    kind: "boolean",
    default: "true",
    help: "ping every peer's VTEP through the overlay (--no-probe skips it)",
  },
  {
    name: "probe-timeout",
    kind: "string",
    default: "1",
    help: "seconds to wait for each probe answer (1-30)",
  },
  { name: "help", kind: "boolean", short: "h", help: "show this help" },
];

export const DOCTOR_FLAGS: FlagDef[] = [
  ...OWN_FLAGS,
  ...ALL_AGENT_FLAGS.filter((d) => SHARED.has(d.name)).map((d) => {
    const help = SHARED_HELP[d.name];
    return help ? { ...d, help } : d;
  }),
];

const OwnSchema = v.object({
  fix: v.optional(v.boolean(), false),
  json: v.optional(v.boolean(), false),
  strict: v.optional(v.boolean(), false),
  "cni-conf-dir": v.optional(
    v.pipe(v.string(), v.regex(/^\//, "--cni-conf-dir must be an absolute path")),
    DEFAULT_CNI_CONF_DIR,
  ),
  bridge: v.optional(
    v.pipe(v.string(), v.regex(/^[^\s/:]{1,15}$/, "--bridge must be an interface name (1-15 characters)")),
    DEFAULT_BRIDGE,
  ),
  probe: v.optional(v.boolean(), true),
  "probe-timeout": v.optional(
    v.pipe(
      v.string(),
      v.check(
        (s) => /^\d+$/.test(s) && Number(s) >= 1 && Number(s) <= 30,
        "--probe-timeout must be 1..30 seconds",
      ),
      v.transform(Number),
    ),
    "1",
  ),
  help: v.optional(v.boolean(), false),
});

export function doctorHelp(): string {
  return flagsHelp(
    "tartan doctor [--fix] [--json] [flags]",
    [
      "Check this node for what breaks overlay networks, and say what is wrong in words: the pod bridge's",
      "address vs the lease, subnet.env, the registry and our lease, the datapath (vxlan device or eBPF",
      "programs and pins), every remote lease programmed and nothing stale, the MTU chain, ip_forward,",
      "rp_filter, br_netfilter, the FORWARD policy, --ip-masq rules, CNI config files that win over ours,",
      "the VXLAN checksum-offload bug, and a ping through the overlay to every peer. Run it as root on",
      "the node (in the node's network namespace); it asks the running agent (--http) for its settings.",
    ].join("\n"),
    DOCTOR_FLAGS,
    [
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
  );
}

/** Argv of the shared agent flags only, rebuilt from parsed values, for parseAgentOptions. */
function agentArgv(flags: RawFlags): string[] {
  const out: string[] = [];
  for (const [name, val] of Object.entries(flags)) {
    if (!SHARED.has(name) || val === undefined) continue;
    if (Array.isArray(val)) for (const x of val) out.push(`--${name}=${x}`);
    else out.push(`--${name}=${String(val)}`);
  }
  return out;
}

export interface ParsedDoctor {
  readonly help: boolean;
  readonly json: boolean;
  readonly run: DoctorRunOptions;
}

export function parseDoctorArgs(
  argv: readonly string[],
  env: Record<string, string | undefined> = process.env,
): ParsedDoctor {
  const { flags, positionals } = parseFlags("doctor", argv, DOCTOR_FLAGS, env);
  if (positionals.length > 0)
    throw new ValidationError(`tartan doctor takes no arguments (got ${JSON.stringify(positionals[0])})`);
  const own: RawFlags = {};
  for (const d of OWN_FLAGS) own[d.name] = flags[d.name];
  const o = validateFlags(OwnSchema, own);
  const agent = parseAgentOptions(agentArgv(flags), {});
  const explicit = new Set(Object.keys(flags).filter((k) => SHARED.has(k) && flags[k] !== undefined));
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

export async function runDoctor(argv: readonly string[], out: (s: string) => void): Promise<number> {
  const p = parseDoctorArgs(argv);
  if (p.help) {
    out(`${doctorHelp()}\n`);
    return 0;
  }
  const report = await runChecks(p.run);
  out(p.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
  return report.exitCode;
}
