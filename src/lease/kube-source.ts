/**
 * The lease source over the Kubernetes API (--kube-subnet-mgr), flannel's kube subnet
 * manager. The network config is the net-conf.json file, with SubnetLen taken from our
 * Node's podCIDR (kube-controller-manager gives every Node the same --node-cidr-mask-size,
 * whatever net-conf says). Our lease is our Node's podCIDR: acquiring it patches flannel's
 * annotations on the Node (only what differs) and then sets its NetworkUnavailable
 * condition to False. Every other lease is a Node with a podCIDR and flannel's
 * annotations, followed with a list+watch of Nodes (src/kube/lease-source.ts); Nodes that
 * are not leases are skipped there, logged once and counted by reason. Nothing expires,
 * nothing is renewed. Loaded only in this mode (lease/open.ts imports it dynamically).
 */
import { type Cidr, cidrToKey, formatCidr, formatIp4, type Ip4, parseIp4 } from "../config/cidr.ts";
import type { NetworkConfig } from "../config/network.ts";
import type { KubeOptions } from "../config/options.ts";
import { type AnnotationNames, annotationNames } from "../kube/annotations.ts";
import { KubeApiError, KubeClient } from "../kube/client.ts";
import { resolveConnection } from "../kube/connection.ts";
import { KubeLeaseSource, type OwnNode, type SkippedNode } from "../kube/lease-source.ts";
import { annotationsOf, revisionOf } from "../kube/node-lease.ts";
import type { NodeWatchOptions } from "../kube/node-watch.ts";
import { outsideNetwork, selectPodCidrs } from "../kube/pod-cidr.ts";
import { errorText, type Logger } from "../log.ts";
import type { Lease } from "./lease.ts";
import { readNetworkConfigFile } from "./registry-source.ts";
import {
  type AcquireRequest,
  type LeaseRecord,
  LeaseRefusedError,
  type LeaseSource,
  type LeaseWatchCallbacks,
  NetworkConfigError,
  SourceWaitingError,
  type WatchHandle,
} from "./source.ts";

export interface KubeSourceOptions {
  readonly kube: KubeOptions;
  /** Our Node (NODE_NAME, the pod's spec.nodeName, or --node-name). */
  readonly nodeName: string;
  readonly netConfigPath: string;
  readonly log: Logger;
  /** Where in-cluster config comes from (KUBERNETES_SERVICE_HOST/PORT); default process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** The client to use instead of one made from the flags (tests). */
  readonly client?: KubeClient;
  /** Node watch tuning (tests). */
  readonly watch?: Omit<NodeWatchOptions, "log" | "resourceVersion">;
}

/** The one line an agent without a podCIDR logs (and /readyz shows) while it waits. */
export function noPodCidrYet(node: string, network: Cidr): string {
  return (
    `Node ${node} has no podCIDR yet; waiting for kube-controller-manager to assign one ` +
    `(it does only when started with --allocate-node-cidrs=true --cluster-cidr=${formatCidr(network)}; ` +
    "kubeadm: init --pod-network-cidr)"
  );
}

/** Annotation values that are strings (all a Node's should be). */
function stringAnnotations(node: OwnNode): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(annotationsOf(node.object))) if (typeof v === "string") out[k] = v;
  return out;
}

/** What the running source knows, for doctor inside the agent: no second list of every Node. */
export interface KubeSourceView {
  readonly description: string;
  readonly records: readonly LeaseRecord[];
  readonly skipped: readonly SkippedNode[];
  /** Our Node as the watch last saw it; null when it does not exist. */
  readonly own: OwnNode | null;
}

export class KubeSource implements LeaseSource {
  readonly description: string;
  readonly names: AnnotationNames;
  readonly #o: KubeSourceOptions;
  readonly #client: KubeClient;
  #nodes: KubeLeaseSource | null = null;

  constructor(o: KubeSourceOptions) {
    this.#o = o;
    this.names = annotationNames(o.kube.annotationPrefix);
    this.#client =
      o.client ??
      new KubeClient(
        resolveConnection(
          { apiUrl: o.kube.apiUrl ?? undefined, kubeconfigFile: o.kube.kubeconfigFile ?? undefined },
          o.env ?? process.env,
        ),
      );
    this.description = `kubernetes:${this.#client.server} (Node ${o.nodeName})`;
  }

  /** The Node list+watch, once the network is known (after networkConfig). */
  get nodes(): KubeLeaseSource | null {
    return this.#nodes;
  }

  /** Our Node, fresh from the API; a missing one is waited for (NODE_NAME may be early, or wrong). */
  async #ownNode(): Promise<OwnNode> {
    const name = this.#o.nodeName;
    let obj: OwnNode["object"];
    try {
      obj = (await this.#client.getNode(name)) as OwnNode["object"];
    } catch (e) {
      if (e instanceof KubeApiError && e.status === 404)
        throw new SourceWaitingError(
          `the API has no Node named ${name} (yet); if that is not this node's name, fix NODE_NAME or --node-name`,
        );
      throw e;
    }
    return { name, resourceVersion: String(obj.metadata?.resourceVersion ?? ""), object: obj };
  }

  /** Our IPv4 podCIDR, checked as flanneld checks it; `Final` is the error an operator must act on. */
  #podCidr(node: OwnNode, network: Cidr, Final: new (m: string) => Error): Cidr {
    const name = this.#o.nodeName;
    const pc = selectPodCidrs(node.object.spec);
    if (!pc.ok) {
      if (pc.missing) throw new SourceWaitingError(noPodCidrYet(name, network));
      throw new Final(`Node ${name}: ${pc.why}`);
    }
    const v4 = pc.cidrs.v4;
    if (!v4)
      throw new Final(
        `Node ${name} has no IPv4 podCIDR (only ${pc.cidrs.v6}): Tartan carries IPv4; give the cluster an IPv4 --cluster-cidr`,
      );
    const outside = outsideNetwork(network, v4);
    if (outside)
      throw new Final(
        `Node ${name}'s ${outside} (Network of ${this.#o.netConfigPath}): set Network to the cluster CIDR, kube-controller-manager's --cluster-cidr`,
      );
    return v4;
  }

  async networkConfig(): Promise<NetworkConfig> {
    const base = readNetworkConfigFile(this.#o.netConfigPath);
    const sn = this.#podCidr(await this.#ownNode(), base.network, NetworkConfigError);
    if (sn.len !== base.subnetLen)
      this.#o.log.info(
        "subnets are the Nodes' podCIDRs: their prefix length (kube-controller-manager's --node-cidr-mask-size) replaces SubnetLen",
        { podCIDR: formatCidr(sn), subnetLen: base.subnetLen },
      );
    this.#nodes ??= new KubeLeaseSource({
      client: this.#client,
      nodeName: this.#o.nodeName,
      names: this.names,
      network: base.network,
      log: this.#o.log,
      watch: this.#o.watch,
    });
    return { ...base, subnetLen: sn.len, podCidrSubnets: true };
  }

  #need(): KubeLeaseSource {
    if (!this.#nodes) throw new Error("the kube lease source is used before its network config was read");
    return this.#nodes;
  }

  async acquire({ config, attrs }: AcquireRequest): Promise<Lease> {
    const nodes = this.#need();
    const name = this.#o.nodeName;
    const own = await this.#ownNode();
    const sn = this.#podCidr(own, config.network, LeaseRefusedError);
    if (sn.len !== config.subnetLen)
      throw new LeaseRefusedError(
        `Node ${name}'s podCIDR is now ${formatCidr(sn)}, but this agent set its datapath up for /${config.subnetLen} podCIDRs: restart the agent`,
      );
    const overwrite = stringAnnotations(own)[this.names.publicIpOverwrite];
    const overwriteIp = overwrite ? parseIp4(overwrite) : null;
    if (overwrite && overwriteIp === null)
      throw new LeaseRefusedError(
        `annotation ${this.names.publicIpOverwrite}=${JSON.stringify(overwrite)} on Node ${name} is not an IPv4 address: fix it, or remove it (kubectl annotate node ${name} ${this.names.publicIpOverwrite}-)`,
      );
    const published = await nodes.publish(
      { publicIp: formatIp4(attrs.publicIp), backendType: attrs.backendType, vxlan: attrs.vxlan },
      own,
    );
    if (this.#o.kube.setNodeNetworkUnavailable) await nodes.markNetworkUp(published.node);
    this.#o.log.info("our subnet is our Node's podCIDR", {
      node: name,
      podCIDR: formatCidr(sn),
      publicIp: overwrite || formatIp4(attrs.publicIp),
    });
    return {
      subnet: sn,
      key: cidrToKey(sn),
      // peers reach us at what the annotation says: public-ip-overwrite, when set, wins
      attrs: { ...attrs, publicIp: overwriteIp ?? attrs.publicIp },
      expiresAt: null,
      revision: revisionOf(published.node.resourceVersion),
    };
  }

  /** Never called (our lease never expires); the lease stands as it is. */
  async renew(lease: Lease): Promise<Lease> {
    return lease;
  }

  list() {
    return this.#need().list();
  }

  watch(fromRevision: number, cb: LeaseWatchCallbacks): WatchHandle {
    return this.#need().watch(fromRevision, cb);
  }

  async storedPublicIp(): Promise<Ip4 | null> {
    let own: OwnNode;
    try {
      own = await this.#ownNode();
    } catch (e) {
      this.#o.log.warn("cannot read our Node for its node-public-ip annotation; going on without it", {
        node: this.#o.nodeName,
        error: errorText(e),
      });
      return null;
    }
    const key = this.names.nodePublicIp;
    const value = stringAnnotations(own)[key];
    if (!value) return null;
    const ip = parseIp4(value);
    if (ip === null)
      throw new LeaseRefusedError(
        `annotation ${key}=${JSON.stringify(value)} on Node ${this.#o.nodeName} is not an IPv4 address: fix it, or remove it (kubectl annotate node ${this.#o.nodeName} ${key}-)`,
      );
    this.#o.log.info("our public IP is the Node's node-public-ip annotation (it replaces --public-ip)", {
      node: this.#o.nodeName,
      publicIp: value,
    });
    return ip;
  }

  /** The Nodes as list and watch left them; null before the network config was read. */
  view(): KubeSourceView | null {
    const n = this.#nodes;
    if (!n) return null;
    return {
      description: this.description,
      records: n.leaseRecords(),
      skipped: n.skippedNodes(),
      own: n.ownNode(),
    };
  }

  skippedByReason(): Readonly<Record<string, number>> {
    return this.#nodes?.skipCounts() ?? {};
  }

  async close(): Promise<void> {
    if (this.#nodes) await this.#nodes.close();
    else this.#client.close();
  }
}
