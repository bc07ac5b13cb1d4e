/**
 * The lease source over the Kubernetes API (--kube-subnet-mgr), flannel's kube subnet
 * manager. The network config is the net-conf.json file, with SubnetLen taken from our
 * Node's podCIDR (kube-controller-manager gives every Node the same --node-cidr-mask-size,
 * whatever net-conf says; with EnableIPv6, IPv6SubnetLen from its IPv6 podCIDR). Our lease
 * is our Node's podCIDR (dual stack: both, one per family): acquiring it patches flannel's
 * annotations on the Node (only what differs; dual stack adds public-ipv6 and
 * backend-v6-data) and then sets its NetworkUnavailable condition to False. Every other lease is a Node with a podCIDR and flannel's
 * annotations, followed with a list+watch of Nodes (src/kube/lease-source.ts); Nodes that
 * are not leases are skipped there, logged once and counted by reason. Nothing expires,
 * nothing is renewed. Loaded only in this mode (lease/open.ts imports it dynamically).
 */
import { type Cidr, cidrToKey, formatCidr, formatIp4, parseIp4 } from "../config/cidr.ts";
import { type Cidr6, formatCidr6, formatIp6, parseIp6 } from "../config/cidr6.ts";
import type { NetworkConfig } from "../config/network.ts";
import type { KubeOptions } from "../config/options.ts";
import { subnetKey } from "../config/subnet-key.ts";
import { type AnnotationNames, annotationNames, publishesIpv6 } from "../kube/annotations.ts";
import { KubeApiError, KubeClient } from "../kube/client.ts";
import { resolveConnection } from "../kube/connection.ts";
import { KubeLeaseSource, type OwnNode, type SkippedNode } from "../kube/lease-source.ts";
import { annotationsOf, revisionOf } from "../kube/node-lease.ts";
import type { NodeWatchOptions } from "../kube/node-watch.ts";
import { ownSubnets, podNetworks } from "../kube/pod-cidr.ts";
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
  type StoredPublicIps,
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

  /**
   * Our podCIDRs, checked as flanneld checks them (IPv4 in Network; with EnableIPv6, IPv6
   * in IPv6Network); `Final` is the error an operator must act on.
   */
  #podCidrs(
    node: OwnNode,
    config: NetworkConfig,
    Final: new (m: string) => Error,
  ): { v4: Cidr; v6: Cidr6 | null } {
    const r = ownSubnets(this.#o.nodeName, node.object.spec, podNetworks(config), this.#o.netConfigPath);
    if (!r.ok) throw r.waiting ? new SourceWaitingError(r.why) : new Final(r.why);
    return r;
  }

  async networkConfig(): Promise<NetworkConfig> {
    const base = readNetworkConfigFile(this.#o.netConfigPath);
    const sn = this.#podCidrs(await this.#ownNode(), base, NetworkConfigError);
    if (sn.v4.len !== base.subnetLen)
      this.#o.log.info(
        "subnets are the Nodes' podCIDRs: their prefix length (kube-controller-manager's --node-cidr-mask-size) replaces SubnetLen",
        { podCIDR: formatCidr(sn.v4), subnetLen: base.subnetLen },
      );
    const c6 = base.ipv6 ?? null;
    if (c6 && sn.v6 && sn.v6.len !== c6.subnetLen)
      this.#o.log.info(
        "IPv6 subnets are the Nodes' IPv6 podCIDRs: their prefix length (kube-controller-manager's --node-cidr-mask-size-ipv6) replaces IPv6SubnetLen",
        { podCIDR: formatCidr6(sn.v6), ipv6SubnetLen: c6.subnetLen },
      );
    this.#nodes ??= new KubeLeaseSource({
      client: this.#client,
      nodeName: this.#o.nodeName,
      names: this.names,
      nets: podNetworks(base),
      log: this.#o.log,
      watch: this.#o.watch,
    });
    return {
      ...base,
      subnetLen: sn.v4.len,
      ...(c6 && sn.v6 ? { ipv6: { ...c6, subnetLen: sn.v6.len } } : {}),
      podCidrSubnets: true,
    };
  }

  #need(): KubeLeaseSource {
    if (!this.#nodes) throw new Error("the kube lease source is used before its network config was read");
    return this.#nodes;
  }

  async acquire({ config, attrs }: AcquireRequest): Promise<Lease> {
    const nodes = this.#need();
    const name = this.#o.nodeName;
    const own = await this.#ownNode();
    const sn = this.#podCidrs(own, config, LeaseRefusedError);
    const restart = (what: string, now: string, len: number) =>
      new LeaseRefusedError(
        `Node ${name}'s ${what} is now ${now}, but this agent set its datapath up for /${len} ones: restart the agent`,
      );
    if (sn.v4.len !== config.subnetLen) throw restart("podCIDR", formatCidr(sn.v4), config.subnetLen);
    const c6 = config.ipv6 ?? null;
    if (c6 && sn.v6 && sn.v6.len !== c6.subnetLen)
      throw restart("IPv6 podCIDR", formatCidr6(sn.v6), c6.subnetLen);
    const ann = stringAnnotations(own);
    const overwrite = this.#annotatedIp(ann, this.names.publicIpOverwrite, parseIp4, "IPv4");
    const v6attrs =
      c6 !== null && sn.v6 !== null && (attrs.publicIpv6 ?? null) !== null
        ? { publicIpv6: formatIp6(attrs.publicIpv6!), vxlan6: attrs.vxlan6 ?? null }
        : {};
    const announce = {
      publicIp: formatIp4(attrs.publicIp),
      backendType: attrs.backendType,
      vxlan: attrs.vxlan,
      ...v6attrs,
    };
    // our lease is dual stack exactly when our Node announces IPv6 (peers read the same); alloc never does
    const dual = publishesIpv6(announce);
    const overwrite6 = dual ? this.#annotatedIp(ann, this.names.publicIpv6Overwrite, parseIp6, "IPv6") : null;
    const published = await nodes.publish(announce, own);
    if (this.#o.kube.setNodeNetworkUnavailable) await nodes.markNetworkUp(published.node);
    // peers reach us at what the annotations say: the overwrite annotations, when set, win
    const publicIp = overwrite ?? attrs.publicIp;
    const publicIpv6 = dual ? (overwrite6 ?? attrs.publicIpv6!) : null;
    this.#o.log.info("our subnet is our Node's podCIDR", {
      node: name,
      podCIDR: formatCidr(sn.v4),
      publicIp: formatIp4(publicIp),
      ...(dual ? { ipv6PodCIDR: formatCidr6(sn.v6!), publicIpv6: formatIp6(publicIpv6!) } : {}),
    });
    const revision = revisionOf(published.node.resourceVersion);
    if (!dual)
      return {
        subnet: sn.v4,
        key: cidrToKey(sn.v4),
        attrs: { publicIp, backendType: attrs.backendType, vxlan: attrs.vxlan },
        expiresAt: null,
        revision,
      };
    return {
      subnet: sn.v4,
      key: subnetKey(sn.v4, sn.v6),
      subnet6: sn.v6,
      attrs: { ...attrs, publicIp, publicIpv6, vxlan6: attrs.vxlan6 ?? null },
      expiresAt: null,
      revision,
    };
  }

  /** An address an operator set in annotation `key` on our Node, null when none; a bad one is refused. */
  #annotatedIp<T>(
    ann: Record<string, string>,
    key: string,
    parse: (s: string) => T | null,
    family: string,
  ): T | null {
    const value = ann[key];
    if (!value) return null;
    const ip = parse(value);
    if (ip === null) {
      const node = this.#o.nodeName;
      throw new LeaseRefusedError(
        `annotation ${key}=${JSON.stringify(value)} on Node ${node} is not an ${family} address: fix it, or remove it (kubectl annotate node ${node} ${key}-)`,
      );
    }
    return ip;
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

  async storedPublicIps(): Promise<StoredPublicIps> {
    let own: OwnNode;
    try {
      own = await this.#ownNode();
    } catch (e) {
      this.#o.log.warn("cannot read our Node for its node-public-ip annotations; going on without them", {
        node: this.#o.nodeName,
        error: errorText(e),
      });
      return { v4: null, v6: null };
    }
    const ann = stringAnnotations(own);
    const v4 = this.#annotatedIp(ann, this.names.nodePublicIp, parseIp4, "IPv4");
    const v6 = this.#annotatedIp(ann, this.names.nodePublicIpv6, parseIp6, "IPv6");
    if (v4 !== null)
      this.#o.log.info("our public IP is the Node's node-public-ip annotation (it replaces --public-ip)", {
        node: this.#o.nodeName,
        publicIp: formatIp4(v4),
      });
    if (v6 !== null)
      this.#o.log.info(
        "our public IPv6 is the Node's node-public-ipv6 annotation (it replaces --public-ipv6)",
        {
          node: this.#o.nodeName,
          publicIpv6: formatIp6(v6),
        },
      );
    return { v4, v6 };
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
