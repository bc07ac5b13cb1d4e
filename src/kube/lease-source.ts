/**
 * The Kubernetes API as a source of leases (flannel's kube subnet manager): every Node
 * that announces itself with flannel's annotations and has a podCIDR is a lease record,
 * exactly what an etcd-backed flanneld would have stored, so the agent's lease sync
 * takes it as it takes a registry's. `list()` and `watch()` have the shape of the
 * registries' (src/registry/registry.ts); a deleted Node, or one that stops being a
 * lease, is a delete of the key it held; a re-list after 410 is one resync. Nodes that
 * are not leases are skipped, counted by reason, and logged once per change.
 *
 * The own-node side: `publish()` patches our annotations (only what differs) and
 * `markNetworkUp()` the NetworkUnavailable condition, both on `nodes/NAME/status` (all
 * that flannel's RBAC allows); `ownNode()` is our Node as last seen by the watch.
 */
import type { Logger } from "../log.ts";
import {
  type AnnotationNames,
  annotationPatch,
  desiredAnnotations,
  type PublishedAttrs,
} from "./annotations.ts";
import type { KubeClient, RawWatchEvent } from "./client.ts";
import { type CompactNode, compactNode, detached } from "./compact-node.ts";
import { networkUpPatch } from "./condition.ts";
import {
  annotationsOf,
  type NodeLeaseRecord,
  type NodeLike,
  nodeLease,
  revisionOf,
  SKIP_REASONS,
  type SkipReason,
} from "./node-lease.ts";
import {
  listNodesInto,
  type NodeSink,
  type NodeWatchHandle,
  type NodeWatchOptions,
  startNodeWatch,
} from "./node-watch.ts";
import type { PodNetworks } from "./pod-cidr.ts";

/** Shaped as the registries' WatchEvent. */
export type LeaseEvent =
  | { readonly type: "put"; readonly record: NodeLeaseRecord }
  | { readonly type: "delete"; readonly key: string; readonly revision: number }
  | { readonly type: "resync"; readonly records: readonly NodeLeaseRecord[]; readonly revision: number };

/** Shaped as the registries' WatchCallbacks. */
export interface LeaseWatchCallbacks {
  onEvents(events: readonly LeaseEvent[]): void;
  onError?(err: Error): void;
  onRecovered?(): void;
}

export interface OwnNode {
  readonly name: string;
  readonly resourceVersion: string;
  /** The Node's fields that are read (compact-node.ts), as the API returned them. */
  readonly object: CompactNode;
}

export interface SkippedNode {
  readonly name: string;
  readonly reason: SkipReason;
  readonly detail: string;
}

export interface KubeLeaseSourceOptions {
  readonly client: KubeClient;
  /** This node's name (NODE_NAME, or the pod's spec.nodeName: see node-name.ts). */
  readonly nodeName: string;
  readonly names: AnnotationNames;
  /** The configured Network (and IPv6Network when EnableIPv6): podCIDRs outside them are skipped. */
  readonly nets: PodNetworks;
  readonly log: Logger;
  readonly watch?: Omit<NodeWatchOptions, "log" | "resourceVersion">;
  /** Our Node was seen to change (or vanish: null), by the watch. */
  readonly onOwnNode?: (node: OwnNode | null) => void;
  readonly now?: () => Date;
}

interface NodeEntry {
  /** The key this node's lease holds, or null. */
  readonly held: string | null;
  readonly value: string | null;
  /** The record it would hold (also when skipped as a duplicate). */
  readonly candidate: NodeLeaseRecord | null;
  readonly skip: { readonly reason: SkipReason; readonly detail: string } | null;
}

/** The lease state built from Nodes: which node holds which key, and who is skipped why. */
class LeaseTable {
  readonly nodes = new Map<string, NodeEntry>();
  /** Which node holds each IPv4 subnet (a key's part before "&": the IPv6 one may differ). */
  readonly byKey = new Map<string, string>();
  readonly skipCounts = new Map<SkipReason, number>();
  duplicates = 0;

  records(): NodeLeaseRecord[] {
    const out: NodeLeaseRecord[] = [];
    for (const e of this.nodes.values()) if (e.held && e.candidate) out.push(e.candidate);
    return out;
  }
}

export class KubeLeaseSource {
  readonly description: string;
  readonly #o: KubeLeaseSourceOptions;
  #table = new LeaseTable();
  #staging: LeaseTable | null = null;
  #listRv = "";
  #own: OwnNode | null = null;
  #watch: NodeWatchHandle | null = null;
  #cb: LeaseWatchCallbacks | null = null;
  /** What was last logged per node, so each change is logged once. */
  readonly #logged = new Map<string, string>();

  constructor(o: KubeLeaseSourceOptions) {
    this.#o = o;
    this.description = `kube:${o.client.server} (node ${o.nodeName})`;
  }

  // --- the registry-shaped read side ---------------------------------------------------

  /** Lists every Node: the lease records and the resourceVersion (as a number) they are consistent at. */
  async list(): Promise<{ records: NodeLeaseRecord[]; revision: number }> {
    this.#listRv = await listNodesInto(this.#o.client, this.#sink(), { pageSize: this.#o.watch?.pageSize });
    return { records: this.#table.records(), revision: revisionOf(this.#listRv) };
  }

  /** Follows Nodes after list(); changes go to `cb` in order, until stop(). */
  watch(fromRevision: number, cb: LeaseWatchCallbacks): { stop(): void } {
    this.#watch?.stop();
    this.#cb = cb;
    // resume from the list's own resourceVersion string; anything else is a fresh list (a resync)
    const from = revisionOf(this.#listRv) === fromRevision ? this.#listRv : "";
    const handle = startNodeWatch(this.#o.client, this.#sink(), {
      ...this.#o.watch,
      log: this.#o.log,
      resourceVersion: from,
    });
    this.#watch = handle;
    return {
      stop: () => {
        handle.stop();
        if (this.#watch === handle) this.#watch = null;
        this.#cb = null;
      },
    };
  }

  /** The resourceVersion the watch has reached. */
  get resourceVersion(): string {
    return this.#watch?.resourceVersion ?? this.#listRv;
  }

  /** Nodes skipped right now, per reason (every reason present, zero when none). */
  skipCounts(): Record<SkipReason, number> {
    const out = {} as Record<SkipReason, number>;
    for (const r of SKIP_REASONS) out[r] = this.#table.skipCounts.get(r) ?? 0;
    return out;
  }

  /** The lease records as the list and watch last left them (no API call). */
  leaseRecords(): NodeLeaseRecord[] {
    return this.#table.records();
  }

  skippedNodes(): SkippedNode[] {
    const out: SkippedNode[] = [];
    for (const [name, e] of this.#table.nodes) if (e.skip) out.push({ name, ...e.skip });
    return out;
  }

  /** Our Node as the list or watch last saw it; null before the list or when it does not exist. */
  ownNode(): OwnNode | null {
    return this.#own;
  }

  // --- our own Node --------------------------------------------------------------------

  /** Our Node, fresh from the API. */
  async fetchOwnNode(): Promise<OwnNode> {
    return this.#ownFrom(await this.#o.client.getNode(this.#o.nodeName));
  }

  /**
   * Publishes our annotations as flanneld does, patching only those that differ (on
   * nodes/NAME/status), against `node` (our Node as just read) or a fresh read. Returns
   * our Node as it now stands and the patch sent (null when the Node already said it all).
   */
  async publish(attrs: PublishedAttrs, node?: OwnNode): Promise<{ node: OwnNode; patch: string | null }> {
    const cur = node ?? (await this.fetchOwnNode());
    const current = stringMap(annotationsOf(cur.object));
    const patch = annotationPatch(current, desiredAnnotations(this.#o.names, attrs, current));
    if (patch === null) return { node: cur, patch };
    const obj = await this.#o.client.patchNode(this.#o.nodeName, patch, {
      kind: "strategic",
      subresource: "status",
    });
    this.#o.log.info("published our annotations on the Node", { node: this.#o.nodeName, patch });
    return { node: this.#ownFrom(obj), patch };
  }

  /**
   * Sets NetworkUnavailable=False (FlannelIsUp) unless `node` (or a fresh read) says so
   * already; returns the patch sent or null.
   */
  async markNetworkUp(node?: OwnNode): Promise<string | null> {
    const cur = node ?? (await this.fetchOwnNode());
    const patch = networkUpPatch(cur.object.status, (this.#o.now ?? (() => new Date()))());
    if (patch === null) return null;
    await this.#o.client.patchNode(this.#o.nodeName, patch, { kind: "strategic", subresource: "status" });
    this.#o.log.info("set the Node's NetworkUnavailable condition to False", { node: this.#o.nodeName });
    return patch;
  }

  #ownFrom(obj: unknown): OwnNode {
    const o = compactNode(obj);
    return { name: this.#o.nodeName, resourceVersion: String(o.metadata.resourceVersion ?? ""), object: o };
  }

  async close(): Promise<void> {
    const w = this.#watch;
    this.#watch = null;
    this.#cb = null;
    if (w) {
      w.stop();
      await w.done;
    }
    this.#o.client.close();
  }

  // --- Nodes → leases ------------------------------------------------------------------

  #sink(): NodeSink {
    return {
      listStart: () => {
        this.#staging = new LeaseTable();
      },
      listPage: (nodes) => {
        const t = this.#staging!;
        for (const n of nodes) this.#apply(t, n as NodeLike, false, null);
      },
      listDone: (rv) => {
        const fresh = this.#staging!;
        this.#staging = null;
        const hadOwn = this.#own;
        if (!fresh.nodes.has(this.#o.nodeName)) this.#own = null;
        this.#table = fresh;
        for (const name of this.#logged.keys()) if (!fresh.nodes.has(name)) this.#logged.delete(name);
        this.#listRv = rv;
        if (this.#cb) {
          this.#o.log.info("Node list refreshed", {
            nodes: fresh.nodes.size,
            leases: fresh.byKey.size,
            resourceVersion: rv,
          });
          this.#cb.onEvents([{ type: "resync", records: fresh.records(), revision: revisionOf(rv) }]);
        }
        if (hadOwn !== this.#own || (this.#own && hadOwn?.resourceVersion !== this.#own.resourceVersion))
          this.#o.onOwnNode?.(this.#own);
      },
      events: (batch) => this.#events(batch),
      onError: (e) => this.#cb?.onError?.(e),
      onRecovered: () => this.#cb?.onRecovered?.(),
    };
  }

  #events(batch: readonly RawWatchEvent[]): void {
    const out: LeaseEvent[] = [];
    let ownChanged = false;
    for (const ev of batch) {
      const node = ev.object as NodeLike;
      const name = typeof node?.metadata?.name === "string" ? node.metadata.name : "";
      if (name === "") continue;
      if (name === this.#o.nodeName) ownChanged = true;
      this.#apply(this.#table, node, ev.type === "DELETED", out);
    }
    if (out.length) this.#cb?.onEvents(out);
    if (ownChanged) this.#o.onOwnNode?.(this.#own);
  }

  /** Takes one Node (or its deletion) into `t`; the lease events it causes go to `out` (null: a list, no events). */
  #apply(t: LeaseTable, node: NodeLike, deleted: boolean, out: LeaseEvent[] | null): void {
    const res = nodeLease(node, this.#o.names, this.#o.nets);
    if (res.name === "") return;
    // what is kept must not point into the parsed page (compact-node.ts)
    const name = detached(res.name);
    if (name === this.#o.nodeName) this.#own = deleted ? null : this.#ownFrom(node);
    const prev = t.nodes.get(name);
    if (prev?.skip) this.#count(t, prev.skip.reason, -1);
    const candidate = !deleted && res.ok ? res.record : null;
    const freed: string[] = [];
    if (prev?.held && prev.held !== candidate?.key) {
      t.byKey.delete(slotOf(prev.held));
      freed.push(slotOf(prev.held));
      out?.push({ type: "delete", key: prev.held, revision: revisionOf(node.metadata?.resourceVersion) });
    }
    if (deleted) {
      t.nodes.delete(name);
      this.#logged.delete(name);
    } else if (candidate) {
      const owner = t.byKey.get(slotOf(candidate.key));
      if (owner !== undefined && owner !== name) {
        this.#store(t, name, {
          held: null,
          value: null,
          candidate,
          skip: {
            reason: "duplicate-podcidr",
            detail: `podCIDR ${candidate.key} is already the lease of node ${owner}`,
          },
        });
      } else {
        t.byKey.set(slotOf(candidate.key), name);
        this.#store(t, name, { held: candidate.key, value: candidate.value, candidate, skip: null });
        if (!prev || prev.held !== candidate.key || prev.value !== candidate.value)
          out?.push({ type: "put", record: candidate });
      }
    } else if (!res.ok) {
      this.#store(t, name, {
        held: null,
        value: null,
        candidate: null,
        skip: { reason: res.reason, detail: detached(res.detail) },
      });
    }
    // a node that was skipped as a duplicate of a freed key takes it over
    if (t.duplicates > 0)
      for (const slot of freed) {
        if (t.byKey.has(slot)) continue; // taken again (by the same node, its IPv6 subnet changed)
        for (const [other, e] of t.nodes)
          if (e.skip?.reason === "duplicate-podcidr" && e.candidate && slotOf(e.candidate.key) === slot) {
            this.#count(t, "duplicate-podcidr", -1);
            t.byKey.set(slot, other);
            this.#store(t, other, {
              held: e.candidate.key,
              value: e.candidate.value,
              candidate: e.candidate,
              skip: null,
            });
            out?.push({ type: "put", record: e.candidate });
            break;
          }
      }
  }

  #store(t: LeaseTable, name: string, e: NodeEntry): void {
    t.nodes.set(name, e);
    if (e.skip) this.#count(t, e.skip.reason, 1);
    const said = e.skip ? `${e.skip.reason}: ${e.skip.detail}` : "lease";
    if (this.#logged.get(name) === said) return;
    const first = !this.#logged.has(name);
    this.#logged.set(name, said);
    if (!e.skip) {
      if (!first) this.#o.log.info("Node is a lease again", { node: name, key: e.held });
      return;
    }
    const fields = { node: name, reason: e.skip.reason, detail: e.skip.detail };
    // a Node without flannel's annotations or a podCIDR yet is normal (not our node, or not booted)
    if (e.skip.reason === "not-managed") this.#o.log.debug("Node is not a lease; skipping it", fields);
    else if (e.skip.reason === "no-podcidr") this.#o.log.info("Node is not a lease; skipping it", fields);
    else this.#o.log.warn("Node is not a lease; skipping it", fields);
  }

  #count(t: LeaseTable, reason: SkipReason, d: number): void {
    t.skipCounts.set(reason, (t.skipCounts.get(reason) ?? 0) + d);
    if (reason === "duplicate-podcidr") t.duplicates += d;
  }
}

/** The IPv4 subnet a lease key holds ("10.244.3.0-24" of "10.244.3.0-24&fd00:19:0:3::-64"). */
function slotOf(key: string): string {
  const amp = key.indexOf("&");
  return amp < 0 ? key : key.slice(0, amp);
}

function stringMap(o: Readonly<Record<string, unknown>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(o)) if (typeof v === "string") out[k] = v;
  return out;
}
