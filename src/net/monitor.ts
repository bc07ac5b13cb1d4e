/**
 * Kernel network events as they happen, through ONE long-lived `ip -o monitor label`
 * child (one line per event) instead of polling with a process per read: links and
 * neighbours — the latter include the bridge's FDB (AF_BRIDGE neighbours, printed
 * without an address). If the child exits it is started again after a pause; `onStart`
 * runs at every (re)start, since events may have been missed in between, so the caller
 * reads the state it follows in full then. Parsing the lines is pure.
 */
import { errorText, type Logger } from "../log.ts";
import { type LineChild, spawnLines } from "./exec.ts";

export type MonitorEvent =
  | {
      readonly kind: "link";
      readonly deleted: boolean;
      readonly ifindex: number;
      readonly ifname: string;
      /** The bridge (or other master) the link is enslaved to, as the event shows it. */
      readonly master: string | null;
    }
  | {
      readonly kind: "neigh";
      readonly deleted: boolean;
      /** The neighbour's address; null for a bridge FDB entry. */
      readonly dst: string | null;
      readonly dev: string;
      readonly lladdr: string | null;
      /** NUD states (REACHABLE, STALE, FAILED, ...) as printed. */
      readonly state: readonly string[];
    };

/** One line of `ip -o monitor label link neigh`, or null for lines of other objects or shapes. */
export function parseMonitorLine(line: string): MonitorEvent | null {
  const m = /^\[(LINK|NEIGH)\](Deleted )?(.*)$/.exec(line.trim());
  if (!m) return null;
  const deleted = m[2] !== undefined;
  const rest = m[3]!;
  if (m[1] === "LINK") {
    const l = /^(\d+): ([^:@\s]+)(?:@[^:\s]*)?: /.exec(rest);
    if (!l) return null;
    const master = / master (\S+)/.exec(rest);
    return {
      kind: "link",
      deleted,
      ifindex: Number(l[1]),
      ifname: l[2]!,
      master: master ? master[1]! : null,
    };
  }
  const t = rest.split(/\s+/).filter(Boolean);
  const dst = t[0] !== "dev" ? (t.shift() ?? null) : null;
  const at = (k: string) => {
    const i = t.indexOf(k);
    return i >= 0 && i + 1 < t.length ? t[i + 1]! : null;
  };
  const dev = at("dev");
  if (!dev) return null;
  const state = t.filter((w) => /^[A-Z_]+$/.test(w));
  return { kind: "neigh", deleted, dst, dev, lladdr: at("lladdr"), state };
}

export interface IpMonitorOptions {
  /** `ip monitor` objects to follow. */
  readonly objects: readonly ("link" | "neigh")[];
  readonly onEvent: (e: MonitorEvent) => void;
  /** Runs when the child has (re)started: read the followed state in full. */
  readonly onStart: () => void;
  readonly log: Logger;
  /** Pause before starting an exited child again (default 1000 ms). */
  readonly restartMs?: number;
}

/** How long after spawning `ip monitor` the full read is done (it starts in a few ms). */
const SUBSCRIBE_MS = 100;

/**
 * `ip monitor` dies with the agent, SIGKILL included: setpriv (util-linux) sets its
 * parent-death signal before exec. Without it an orphan would notice only at its next
 * event (a write to the closed pipe), and until then keep its netlink socket, and with it
 * the network namespace, alive. Where setpriv is missing the child's own EPIPE remains.
 */
function dieWithParent(): string[] {
  return Bun.which("setpriv") ? ["setpriv", "--pdeathsig", "SIGTERM"] : [];
}

export class IpMonitor {
  readonly #o: IpMonitorOptions;
  #child: LineChild | null = null;
  #restart: ReturnType<typeof setTimeout> | null = null;
  #stopped = true;

  constructor(o: IpMonitorOptions) {
    this.#o = o;
  }

  /** The running child's PID, or null. */
  get pid(): number | null {
    return this.#child?.pid ?? null;
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#spawn();
  }

  #spawn(): void {
    const { log, objects } = this.#o;
    const cmd = [...dieWithParent(), "ip", "-o", "monitor", "label", ...objects];
    let child: LineChild;
    try {
      child = spawnLines(
        cmd,
        (line) => {
          const e = parseMonitorLine(line);
          if (!e) return;
          try {
            this.#o.onEvent(e);
          } catch (err) {
            log.warn("handling a network event failed", { line, error: errorText(err) });
          }
        },
        (code, stderr) => {
          if (this.#child === child) this.#child = null;
          if (this.#stopped) return;
          log.warn("ip monitor exited; starting it again", {
            code,
            stderr: stderr.trim(),
            inMs: this.#o.restartMs ?? 1000,
          });
          this.#restart = setTimeout(() => {
            this.#restart = null;
            if (!this.#stopped) this.#spawn();
          }, this.#o.restartMs ?? 1000);
        },
      );
    } catch (e) {
      log.warn("cannot start ip monitor; retrying", { error: errorText(e) });
      this.#restart = setTimeout(() => {
        this.#restart = null;
        if (!this.#stopped) this.#spawn();
      }, this.#o.restartMs ?? 1000);
      return;
    }
    this.#child = child;
    // ip prints nothing once subscribed: give it a moment to open its netlink socket, so
    // the full read comes after the subscription (the caller's periodic resync covers the rest)
    this.#restart = setTimeout(() => {
      this.#restart = null;
      if (!this.#stopped && this.#child === child) this.#o.onStart();
    }, SUBSCRIBE_MS);
  }

  /** Ends the child (by its PID) and any pending restart; resolves once it has exited. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#restart) clearTimeout(this.#restart);
    this.#restart = null;
    const c = this.#child;
    this.#child = null;
    if (c) {
      c.kill();
      await c.done;
    }
  }
}
