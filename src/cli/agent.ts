/** `tartan agent`: parses the agent's flags, logs what came from where, and runs the agent. */
import { runAgent } from "../agent/agent.ts";
import type { KubeOptions } from "../config/options.ts";
import { createLogger } from "../log.ts";
import { COMMIT, VERSION } from "../version.ts";
import type { Command } from "./command.ts";
import { AGENT_FLAGS, agentOptionsFrom, type ParsedAgentOptions } from "./options.ts";

export const agentCommand: Command = {
  name: "agent",
  summary: "run the node agent: lease a subnet, program the datapath, serve /healthz",
  usage: "tartan agent [flags]",
  about: [
    "Run the node agent: lease a subnet of the cluster network from the registry, write subnet.env,",
    "program every other node's subnet into the datapath, and serve health and status over HTTP.",
  ].join("\n"),
  flags: AGENT_FLAGS,
  env: true,
  notes: [
    "Examples:",
    "  tartan agent --backend=ebpf-vxlan --iface=eth0",
    "  tartan agent -etcd-endpoints=https://10.0.0.1:2379 -etcd-cafile=/etc/etcd/ca.pem -iface=eth0",
    "Endpoints: GET /healthz /readyz /v1/config /v1/leases /v1/status /v1/doctor /metrics on --http.",
    "SIGTERM or SIGINT stops the agent and leaves the datapath in place for the next start to adopt.",
  ],
  async run(p, io) {
    let parsed = agentOptionsFrom(p, io.env);
    if (parsed.kubeNodeFromPod && !parsed.version)
      parsed = agentOptionsFrom(p, io.env, await podNodeName(parsed.kube!, parsed.kubeNodeFromPod, io.env));
    const { help: _help, version, fromEnv, ignored, kubeNodeFromPod: _pod, ...options } = parsed;
    if (version) {
      io.out(`tartan ${VERSION} (${COMMIT})\n`);
      return 0;
    }
    const log = createLogger(
      { level: options.logLevel, format: options.logFormat },
      { node: options.nodeName },
    );
    if (fromEnv.length)
      log.info("flags taken from FLANNELD_* environment variables", { flags: fromEnv.join(",") });
    if (p.flags.v !== undefined)
      log.debug("flanneld's -v sets the log level", { v: p.flags.v, "log-level": options.logLevel });
    for (const i of ignored) log.info("flanneld flag accepted and ignored", { flag: i.flag, why: i.why });
    return await runAgent(options, log);
  },
};

/** Our Node as flanneld finds it without NODE_NAME: this pod's spec.nodeName, read once from the API. */
async function podNodeName(
  kube: KubeOptions,
  pod: NonNullable<ParsedAgentOptions["kubeNodeFromPod"]>,
  env: Readonly<Record<string, string | undefined>>,
): Promise<string> {
  const { resolveConnection } = await import("../kube/connection.ts");
  const { KubeClient } = await import("../kube/client.ts");
  const { resolveNodeName } = await import("../kube/node-name.ts");
  const conn = resolveConnection(
    { apiUrl: kube.apiUrl ?? undefined, kubeconfigFile: kube.kubeconfigFile ?? undefined },
    env,
  );
  const client = new KubeClient(conn);
  try {
    return await resolveNodeName({ POD_NAME: pod.pod, POD_NAMESPACE: pod.namespace }, client);
  } finally {
    client.close();
  }
}
