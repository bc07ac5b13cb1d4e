/**
 * Following the pod bridge: one read is the bridge link, its ports, its FDB and its
 * neighbours (a `BridgeView`, or null while there is no bridge), handed to whoever keeps
 * the datapath in step with it. Today a poll of `ip`/`bridge` every second, serialized so
 * reads never overlap; turning it into events (`ip monitor`, netlink) changes this unit
 * only, and another consumer (a program per pod veth) takes the same views.
 */
import { errorText, type Logger } from "../../log.ts";
import { getLink, listFdb, listLinks, listNeighbours } from "../../net/ip.ts";
import type { BridgeView } from "./endpoints.ts";

/** The bridge as the kernel has it now, or null when it does not exist. */
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

export interface BridgeFollowerOptions {
  readonly bridge: string;
  /** How often the bridge is read again. */
  readonly intervalMs: number;
  readonly log: Logger;
  /** Called with every read; its failure is logged and the next read comes anyway. */
  readonly onView: (view: BridgeView | null) => Promise<void> | void;
}

export class BridgeFollower {
  readonly #o: BridgeFollowerOptions;
  #timer: ReturnType<typeof setInterval> | null = null;
  #running: Promise<void> = Promise.resolve();

  constructor(o: BridgeFollowerOptions) {
    this.#o = o;
  }

  /** Reads the bridge and hands the view on, after any read under way. Never throws. */
  refresh(): Promise<void> {
    this.#running = this.#running
      .then(async () => this.#o.onView(await readBridge(this.#o.bridge)))
      .catch((e) => this.#o.log.warn("bridge scan failed", { bridge: this.#o.bridge, error: errorText(e) }));
    return this.#running;
  }

  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => void this.refresh(), this.#o.intervalMs);
    this.#timer.unref?.();
  }

  /** No more reads; resolves once the one under way is done. */
  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#running;
  }
}
