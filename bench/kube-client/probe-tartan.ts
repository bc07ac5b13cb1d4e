/**
 * Benchmark probe (bench/kube-client.ts): Tartan's own client lists and watches Nodes
 * through the kube lease source, as the agent will, and reports on stdout as JSON lines:
 * {"synced":nodes,"leases":n} after the list, then {"events":total} per batch of lease
 * events. Connection from KUBECONFIG (TLS, token), or in-cluster under IN_CLUSTER_PREFIX;
 * our node from NODE_NAME.
 */
import { parseCidr } from "../../src/config/cidr.ts";
import { annotationNames } from "../../src/kube/annotations.ts";
import { KubeClient } from "../../src/kube/client.ts";
import { resolveConnection, SERVICE_ACCOUNT_DIR } from "../../src/kube/connection.ts";
import { KubeLeaseSource } from "../../src/kube/lease-source.ts";
import { silentLogger } from "../../src/log.ts";

const src = new KubeLeaseSource({
  // IN_CLUSTER_PREFIX: the service-account directory lives under it (bench/kube-client.ts's check)
  client: new KubeClient(
    process.env.IN_CLUSTER_PREFIX
      ? resolveConnection({}, process.env, {
          serviceAccountDir: `${process.env.IN_CLUSTER_PREFIX}${SERVICE_ACCOUNT_DIR}`,
        })
      : resolveConnection({ kubeconfigFile: process.env.KUBECONFIG }),
  ),
  nodeName: process.env.NODE_NAME ?? "node-1",
  names: annotationNames(),
  nets: { network: parseCidr("198.19.0.0/16")!, network6: null },
  log: silentLogger,
});
const { records, revision } = await src.list();
const skipped = Object.values(src.skipCounts()).reduce((a, b) => a + b, 0);
console.log(JSON.stringify({ synced: records.length + skipped, leases: records.length }));
let events = 0;
src.watch(revision, {
  onEvents: (evs) => {
    events += evs.length;
    console.log(JSON.stringify({ events }));
  },
  onError: (e) => console.log(JSON.stringify({ error: e.message })),
});
