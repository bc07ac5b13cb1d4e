/**
 * Doctor's reading of the Kubernetes API (--kube-subnet-mgr): our Node (its podCIDR,
 * flannel's annotations, the NetworkUnavailable condition) and every Node as a lease, as
 * the agent's kube source reads them. Inside the agent the running source's view is used
 * (no second list of every Node each minute); from the command line, one paged list.
 */
import { cidrToKey } from "../config/cidr.ts";
import type { NetworkConfig } from "../config/network.ts";
import type { KubeOptions } from "../config/options.ts";
import { annotationNames } from "../kube/annotations.ts";
import { KubeClient } from "../kube/client.ts";
import { networkUnavailableCondition } from "../kube/condition.ts";
import { resolveConnection } from "../kube/connection.ts";
import { KubeLeaseSource, type OwnNode } from "../kube/lease-source.ts";
import { annotationsOf, type SkipReason } from "../kube/node-lease.ts";
import { selectPodCidrs } from "../kube/pod-cidr.ts";
import type { KubeSourceView } from "../lease/kube-source.ts";
import { decodeLeaseRecord, type Lease } from "../lease/lease.ts";
import { readNetworkConfigFile } from "../lease/registry-source.ts";
import { errorText, silentLogger } from "../log.ts";
import { withTimeout } from "./attempt.ts";
import { type Fact, fact, factError, type KubeFacts, type RegistryFacts } from "./facts.ts";

/** Skip reasons that are no fault of the data: a Node without an agent yet, or without a podCIDR yet. */
const NORMAL_SKIPS: ReadonlySet<SkipReason> = new Set(["not-managed", "no-podcidr"]);

export interface KubeRead {
  readonly registry: Fact<RegistryFacts>;
  readonly config: Fact<NetworkConfig>;
  readonly kube: Fact<KubeFacts>;
  readonly ownLease: Lease | null;
}

export interface KubeReadOptions {
  readonly kube: KubeOptions;
  readonly nodeName: string;
  readonly netConfigPath: string;
  /** The running agent's source, when doctor runs inside the agent. */
  readonly view?: () => KubeSourceView | null;
  readonly env?: Readonly<Record<string, string | undefined>>;
}

/** The Nodes as a lease source sees them: from the running agent's view, or one list. */
async function nodesNow(o: KubeReadOptions, network: NetworkConfig["network"]): Promise<KubeSourceView> {
  const view = o.view?.();
  if (view) return view;
  const client = new KubeClient(
    resolveConnection(
      { apiUrl: o.kube.apiUrl ?? undefined, kubeconfigFile: o.kube.kubeconfigFile ?? undefined },
      o.env ?? process.env,
    ),
    { timeoutMs: 10_000 },
  );
  const nodes = new KubeLeaseSource({
    client,
    nodeName: o.nodeName,
    names: annotationNames(o.kube.annotationPrefix),
    network,
    log: silentLogger,
  });
  try {
    const { records } = await withTimeout(nodes.list(), 30_000, "listing Nodes");
    return {
      description: `kubernetes:${client.server} (Node ${o.nodeName})`,
      records,
      skipped: nodes.skippedNodes(),
      own: nodes.ownNode(),
    };
  } finally {
    await nodes.close();
  }
}

function ownFacts(own: OwnNode | null): KubeFacts["node"] {
  if (!own) return null;
  const spec = own.object.spec;
  const podCidrs: string[] = [];
  if (Array.isArray(spec?.podCIDRs))
    for (const c of spec.podCIDRs) if (typeof c === "string") podCidrs.push(c);
  if (podCidrs.length === 0 && typeof spec?.podCIDR === "string" && spec.podCIDR !== "")
    podCidrs.push(spec.podCIDR);
  const annotations: Record<string, string> = {};
  for (const [k, v] of Object.entries(annotationsOf(own.object)))
    if (typeof v === "string") annotations[k] = v;
  const c = networkUnavailableCondition(own.object.status as { conditions?: unknown } | undefined);
  return {
    podCidrs,
    annotations,
    networkUnavailable: c
      ? { status: String(c.status ?? ""), reason: String(c.reason ?? ""), message: String(c.message ?? "") }
      : null,
  };
}

/** Reads everything doctor judges about the API; each part that fails carries its reason. */
export async function readKube(o: KubeReadOptions): Promise<KubeRead> {
  let base: NetworkConfig;
  try {
    base = readNetworkConfigFile(o.netConfigPath);
  } catch (e) {
    const why = errorText(e);
    return { registry: factError(why), config: factError(why), kube: factError(why), ownLease: null };
  }
  let seen: KubeSourceView;
  try {
    seen = await nodesNow(o, base.network);
  } catch (e) {
    const why = errorText(e);
    return { registry: factError(why), config: fact(base), kube: factError(why), ownLease: null };
  }
  const node = ownFacts(seen.own);
  // the agent's network config: SubnetLen is our podCIDR's length (see lease/kube-source.ts)
  const pc = seen.own ? selectPodCidrs(seen.own.object.spec) : null;
  const ours = pc?.ok ? pc.cidrs.v4 : null;
  const config: NetworkConfig = ours ? { ...base, subnetLen: ours.len, podCidrSubnets: true } : base;
  const leases: Lease[] = [];
  const invalid: { key: string; reason: string }[] = [];
  for (const rec of seen.records) {
    const d = decodeLeaseRecord(rec, config);
    if (d.ok) leases.push(d.lease);
    else invalid.push({ key: rec.key, reason: d.reason });
  }
  for (const s of seen.skipped)
    if (!NORMAL_SKIPS.has(s.reason))
      invalid.push({ key: `Node ${s.name}`, reason: `${s.reason}: ${s.detail}` });
  const ownKey = ours ? cidrToKey(ours) : null;
  return {
    registry: fact({ description: seen.description, leases, invalid }),
    config: fact(config),
    kube: fact({
      description: seen.description,
      nodeName: o.nodeName,
      names: annotationNames(o.kube.annotationPrefix),
      setNodeNetworkUnavailable: o.kube.setNodeNetworkUnavailable,
      node,
      skipped: seen.skipped.map((s) => ({ name: s.name, reason: s.reason, detail: s.detail })),
    }),
    ownLease: leases.find((l) => l.key === ownKey) ?? null,
  };
}
