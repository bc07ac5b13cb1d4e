/**
 * Following the pod bridge: one read is the bridge link, its ports, its FDB and its
 * neighbours (a `BridgeView`, or null while there is no bridge), handed to whoever keeps
 * the datapath in step with it. Reads happen on events, not on a clock: one long-lived
 * `ip monitor` child (net/monitor.ts) reports link and neighbour changes, and a change
 * that can alter the view (the bridge or a port appearing, going or changing; a pod
 * address or MAC the last view does not place on a port) triggers a read a few ms later,
 * coalescing bursts. A full read also comes when the monitor (re)starts and, as a safety
 * net, every `resyncMs`. Reads are serialized and never overlap.
 */
import { errorText, type Logger } from "../../log.ts";
import { getLink, listFdb, listLinks, listNeighbours } from "../../net/ip.ts";
import { IpMonitor, type MonitorEvent } from "../../net/monitor.ts";
import type { BridgeView } from "./endpoints.ts";

/** The bridge as the kernel has it now (neighbours of both families: dual-stack pods), or null when it does not exist. */
export async function readBridge(name: string): Promise<BridgeView | null> {
  const bridge = await getLink(name);
  if (!bridge) return null;
  const [ports, fdb, neighbours] = await Promise.all([
    listLinks({ master: name }),
    listFdb(name),
    listNeighbours(name),
  ]);
  return { bridge, ports, fdb, neighbours };
}

/**
 * Can event `e` change what a read of bridge `bridge` shows, given the last view? Links:
 * the bridge itself, a link enslaved to it, or one of its ports (also when it leaves).
 * Neighbours: an IPv4 (or global IPv6) neighbour on the bridge whose MAC the last view
 * did not have for that address, and an FDB entry for a MAC the last view knew as a neighbour's but not
 * on a port (learned again after ageing). Deleted neighbours and FDB entries are not:
 * the endpoint map keeps a pod while its veth is a port.
 */
export function changesView(e: MonitorEvent, bridge: string, last: BridgeView | null): boolean {
  if (e.kind === "link")
    return (
      e.ifname === bridge ||
      e.master === bridge ||
      (last?.ports.some((p) => p.ifindex === e.ifindex) ?? false)
    );
  if (e.deleted || !e.lladdr) return false;
  const mac = e.lladdr.toLowerCase();
  if (e.dst !== null) {
    // pods' addresses: IPv4, and IPv6 other than link-local and multicast (dual stack)
    if (e.dev !== bridge || !(/^\d+\.\d+\.\d+\.\d+$/.test(e.dst) || /^(?!fe80:|ff)[0-9a-f:]+$/i.test(e.dst)))
      return false;
    if (e.state.some((s) => s === "FAILED" || s === "INCOMPLETE")) return false;
    return !(last?.neighbours.some((n) => n.dst === e.dst && n.lladdr?.toLowerCase() === mac) ?? false);
  }
  if (!last) return false;
  const isPodMac = last.neighbours.some((n) => n.lladdr?.toLowerCase() === mac);
  const onPort = last.fdb.some((f) => f.mac.toLowerCase() === mac && f.ifname === e.dev);
  return isPodMac && !onPort && last.ports.some((p) => p.ifname === e.dev);
}

export interface BridgeFollowerOptions<S> {
  readonly bridge: string;
  /** The full read every so often, whatever the events said (default 60 s). */
  readonly resyncMs?: number;
  /** How long after a relevant event the read comes, to coalesce a burst (default 20 ms). */
  readonly settleMs?: number;
  readonly log: Logger;
  /**
   * Taken just before each read: the consumer's state to compare the view with (what
   * changes during the read, such as a pod the CNI plugin writes, is then not mistaken
   * for something the view says is gone).
   */
  readonly snapshot: () => S;
  /** Called with every read; its failure is logged and the next read comes anyway. */
  readonly onView: (view: BridgeView | null, before: S) => Promise<void> | void;
}

export class BridgeFollower<S> {
  readonly #o: BridgeFollowerOptions<S>;
  readonly #monitor: IpMonitor;
  #resync: ReturnType<typeof setInterval> | null = null;
  #settle: ReturnType<typeof setTimeout> | null = null;
  #running: Promise<void> = Promise.resolve();
  #last: BridgeView | null = null;
  #following = false;

  constructor(o: BridgeFollowerOptions<S>) {
    this.#o = o;
    this.#monitor = new IpMonitor({
      objects: ["link", "neigh"],
      log: o.log,
      onStart: () => void this.refresh(),
      onEvent: (e) => {
        if (changesView(e, o.bridge, this.#last)) this.#soon();
      },
    });
  }

  /** Reads the bridge and hands the view on, after any read under way. Never throws. */
  refresh(): Promise<void> {
    this.#running = this.#running
      .then(async () => {
        const before = this.#o.snapshot();
        const view = await readBridge(this.#o.bridge);
        this.#last = view;
        await this.#o.onView(view, before);
      })
      .catch((e) => this.#o.log.warn("bridge scan failed", { bridge: this.#o.bridge, error: errorText(e) }));
    return this.#running;
  }

  /** A read shortly, unless one is already due. */
  #soon(): void {
    if (this.#settle || !this.#following) return;
    this.#settle = setTimeout(() => {
      this.#settle = null;
      void this.refresh();
    }, this.#o.settleMs ?? 20);
  }

  /** Follows the bridge: the monitor (whose start brings a full read) and the periodic resync. */
  start(): void {
    if (this.#following) return;
    this.#following = true;
    this.#monitor.start();
    this.#resync = setInterval(() => void this.refresh(), this.#o.resyncMs ?? 60_000);
    this.#resync.unref?.();
  }

  /** No more reads; resolves once the monitor has exited and the read under way is done. */
  async stop(): Promise<void> {
    this.#following = false;
    if (this.#resync) clearInterval(this.#resync);
    this.#resync = null;
    if (this.#settle) clearTimeout(this.#settle);
    this.#settle = null;
    await this.#monitor.stop();
    await this.#running;
  }
}
