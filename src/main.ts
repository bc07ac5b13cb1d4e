/**
 * Entry point: `tartan COMMAND [flags]`. Dispatches subcommands, turns every expected
 * failure into one line on stderr and an exit code: 2 for bad input (usage), 1 for a
 * failure at run time, 0 for success.
 */
import { runAgent } from "./agent/agent.ts";
import { createEbpfEndpointSink } from "./backend/ebpf-vxlan/endpoint-sink.ts";
import { cleanupHelp, runCleanup } from "./cli/cleanup.ts";
import { dockerOptsHelp, runDockerOpts } from "./cli/docker-opts.ts";
import { doctorHelp, runDoctor } from "./cli/doctor.ts";
import { flagsHelp, mainHelp } from "./cli/help.ts";
import { ALL_AGENT_FLAGS, parseAgentOptions } from "./cli/options.ts";
import { configHelp, leasesHelp, runConfig, runLeases } from "./cli/registry-commands.ts";
import { runStatus, statusHelp } from "./cli/status.ts";
import { runCni } from "./cni/plugin.ts";
import { createLogger, errorText, type LogFormat, type LogLevel } from "./log.ts";
import { ValidationError } from "./validation.ts";
import { COMMIT, VERSION } from "./version.ts";

const out = (s: string) => process.stdout.write(s);

function agentHelp(): string {
  return flagsHelp(
    "tartan agent [flags]",
    "Run the node agent: lease a subnet of the cluster network from the registry, write subnet.env,\nprogram every other node's subnet into the datapath, and serve health and status over HTTP.",
    ALL_AGENT_FLAGS,
    [
      "Examples:",
      "  tartan agent --backend=ebpf-vxlan --iface=eth0",
      "  tartan agent -etcd-endpoints=https://10.0.0.1:2379 -etcd-cafile=/etc/etcd/ca.pem -iface=eth0",
      "Endpoints: GET /healthz /readyz /v1/config /v1/leases /v1/status /v1/doctor /metrics on --http.",
    ],
  );
}

function loggerFrom(argv: readonly string[]) {
  // Log flags are read leniently here so even a bad command line logs in the asked format.
  const find = (name: string) => {
    for (let i = 0; i < argv.length; i++) {
      const a = argv[i]!;
      const m = new RegExp(`^--?${name}(?:=(.*))?$`).exec(a);
      if (m) return m[1] ?? argv[i + 1];
    }
    return undefined;
  };
  const level = (find("log-level") ?? "info") as LogLevel;
  const format = (find("log-format") ?? "logfmt") as LogFormat;
  return createLogger({
    level: ["debug", "info", "warn", "error"].includes(level) ? level : "info",
    format: format === "json" ? "json" : "logfmt",
  });
}

const HELP: Record<string, () => string> = {
  agent: agentHelp,
  leases: leasesHelp,
  config: configHelp,
  status: statusHelp,
  "docker-opts": dockerOptsHelp,
  cleanup: cleanupHelp,
  doctor: doctorHelp,
};

export async function main(argv: readonly string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  // The CNI plugin: a runtime runs /opt/cni/bin/tartan with CNI_COMMAND set and no arguments.
  if (cmd === "cni" || (cmd === undefined && process.env.CNI_COMMAND !== undefined))
    return runCni({
      env: process.env,
      stdin: await Bun.stdin.text(),
      stdout: out,
      stderr: (s: string) => process.stderr.write(s),
      // with ebpf-vxlan, pods go straight into the datapath's endpoint map
      endpointSink: createEbpfEndpointSink,
    });
  const log = loggerFrom(rest);
  try {
    switch (cmd) {
      case undefined:
      case "help":
      case "--help":
      case "-h":
      case "-help": {
        const topic = rest[0];
        if (topic && HELP[topic]) out(`${HELP[topic]!()}\n`);
        else if (topic)
          throw new ValidationError(`no help for "${topic}"; commands: ${Object.keys(HELP).join(", ")}`);
        else out(`${mainHelp()}\n`);
        return cmd === undefined ? 2 : 0;
      }
      case "version":
      case "--version":
      case "-version":
        out(`tartan ${VERSION} (${COMMIT})\n`);
        return 0;
      case "agent": {
        const o = parseAgentOptions(rest);
        if (o.help) {
          out(`${agentHelp()}\n`);
          return 0;
        }
        const alog = createLogger({ level: o.logLevel, format: o.logFormat }, { node: o.nodeName });
        if (o.fromEnv.length)
          alog.info("flags taken from FLANNELD_* environment variables", { flags: o.fromEnv.join(",") });
        return await runAgent(o, alog);
      }
      case "leases":
        return await runLeases(rest, log, out);
      case "config":
        return await runConfig(rest, log, out);
      case "status":
        return await runStatus(rest, out);
      case "docker-opts":
        return runDockerOpts(rest, out);
      case "cleanup":
        return await runCleanup(rest, log, out);
      case "doctor":
        return await runDoctor(rest, out);
      default:
        throw new ValidationError(
          `unknown command "${cmd}"; commands: agent, leases, config, status, doctor, docker-opts, cleanup, cni, version, help`,
        );
    }
  } catch (e) {
    if (e instanceof ValidationError) {
      process.stderr.write(`tartan: ${e.message}\n`);
      return 2;
    }
    process.stderr.write(`tartan: ${errorText(e)}\n`);
    return 1;
  }
}

if (import.meta.main) {
  const code = await main(process.argv.slice(2));
  process.exit(code);
}
