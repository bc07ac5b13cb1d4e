/**
 * Benchmark helper (bench/control-plane.ts): the agent's lease sync fed by the Kubernetes
 * lease source (src/kube: Node list and watch) against the stand-in API server, for the
 * Node-informer path while the agent's --kube-subnet-mgr wiring is not in this tree. The
 * real LeaseSync and KubeLeaseSource; a backend that programs nothing; the agent's logger
 * ("programmed leases" lines, read like an agent's); and a /healthz that answers from
 * this process's event loop, so a probe sees what blocks it.
 *   bun kube-probe.ts SERVER NETWORK_JSON HTTP_PORT
 */

import { LeaseSync } from "../../src/agent/lease-sync.ts";
import { SourceHealth } from "../../src/agent/source-health.ts";
import { parseNetworkConfig } from "../../src/config/network.ts";
import { annotationNames } from "../../src/kube/annotations.ts";
import { KubeClient } from "../../src/kube/client.ts";
import { KubeLeaseSource } from "../../src/kube/lease-source.ts";
import { createLogger, silentLogger } from "../../src/log.ts";
import { newMetrics } from "../../src/status/status.ts";

const [server, networkJson, port] = process.argv.slice(2);
const config = parseNetworkConfig(networkJson!);
const log = createLogger({ level: "info" });
const metrics = newMetrics();
const source = new KubeLeaseSource({
  client: new KubeClient({
    server: server!,
    ca: null,
    cert: null,
    key: null,
    insecureSkipTlsVerify: false,
    tlsServerName: null,
    auth: { kind: "none" },
    namespace: null,
    source: "bench",
  }),
  nodeName: "bench-probe",
  names: annotationNames(),
  network: config.network,
  log: silentLogger,
});
Bun.serve({
  hostname: "127.0.0.1",
  port: Number(port),
  fetch: () => Response.json({ status: "ok" }),
});
const sync = new LeaseSync({
  source: { list: () => source.list(), watch: (rev, cb) => source.watch(rev, cb) },
  config,
  backend: { apply: async () => {} },
  log,
  metrics,
  health: new SourceHealth(source.description, log, metrics),
  ownLease: () => null,
  onOwnLeaseGone: () => {},
});
await sync.start();
log.info("kube probe synced", { leases: sync.leases.size });
process.on("SIGTERM", () => process.exit(0));
