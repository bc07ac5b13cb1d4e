/**
 * One agent under the control-plane benchmark: started in a node namespace on etcd, read
 * from the outside only — its CPU time (itself and the `ip`/`bridge` children it waited
 * for) and memory from /proc, when it programmed what from its log ("programmed leases"
 * lines), its /healthz latency from a probe process beside it.
 */
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { type Lab, type LabProcess, until } from "../../test/helpers/netns.ts";

export const ROOT = resolve(import.meta.dir, "../..");
export const BUN = join(ROOT, "node_modules/.bin/bun");
const HERE = import.meta.dir;

/** CPU-seconds of a process (`self`) and of the children it reaped, from /proc/PID/stat (100 ticks/s). */
export function cpuSeconds(pid: number): { self: number; children: number } {
  const s = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
  // fields 14–17 of stat: utime stime cutime cstime; f[0] is field 3
  return { self: (Number(f[11]) + Number(f[12])) / 100, children: (Number(f[13]) + Number(f[14])) / 100 };
}

/** Resident and peak resident memory (MiB). */
export function memory(pid: number): { rss: number; peak: number } {
  const s = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(s)?.[1] ?? Number.NaN);
  return { rss: kb("VmRSS") / 1024, peak: kb("VmHWM") / 1024 };
}

export function loadAverage(): number {
  return Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]);
}

/** One "programmed leases" log line. */
export interface Applied {
  readonly at: number;
  readonly added: number;
  readonly updated: number;
  readonly removed: number;
  readonly total: number;
  readonly ms: number;
}

export class AgentRun {
  constructor(
    readonly lab: Lab,
    readonly ns: string,
    readonly proc: LabProcess,
  ) {}

  get pid(): number {
    return this.proc.proc.pid;
  }

  /** CPU-seconds so far, the `ip`/`bridge`/`ping` children included. */
  cpu(): number {
    const c = cpuSeconds(this.pid);
    return c.self + c.children;
  }

  /** CPU-seconds of the children alone. */
  childCpu(): number {
    return cpuSeconds(this.pid).children;
  }

  memory(): { rss: number; peak: number } {
    return memory(this.pid);
  }

  log(): string {
    try {
      return readFileSync(this.proc.logPath, "utf8");
    } catch {
      return "";
    }
  }

  /** Every apply the agent logged. */
  applies(): Applied[] {
    const out: Applied[] = [];
    for (const line of this.log().split("\n")) {
      if (!line.includes('msg="programmed leases"')) continue;
      const field = (k: string) => Number(new RegExp(` ${k}=([\\d.]+)`).exec(line)?.[1] ?? Number.NaN);
      const t = /^time=(\S+)/.exec(line)?.[1];
      out.push({
        at: t ? Date.parse(t) : Number.NaN,
        added: field("added"),
        updated: field("updated"),
        removed: field("removed"),
        total: field("total"),
        ms: field("ms"),
      });
    }
    return out;
  }

  /** Waits until the applies logged since `since` (epoch ms) satisfy `done`; returns the last one's time. */
  async programmed(
    since: number,
    done: (a: Applied[]) => boolean,
    what: string,
    ms: number,
  ): Promise<number> {
    return until(
      () => {
        if (this.proc.proc.exitCode !== null) throw new Error(`agent exited:\n${this.log().slice(-3000)}`);
        const a = this.applies().filter((x) => x.at >= since);
        return a.length > 0 && done(a) ? a[a.length - 1]!.at : false;
      },
      what,
      ms,
    ).catch((e) => {
      throw new Error(`${(e as Error).message}\n--- agent log ---\n${this.log().slice(-3000)}`);
    });
  }
}

/** A /healthz probe process in the agent's namespace (every `everyMs`). */
export class HealthzProbe {
  readonly #p: LabProcess;
  readonly #lab: Lab;

  constructor(lab: Lab, ns: string, name: string, everyMs = 10, port = 8471) {
    this.#lab = lab;
    this.#p = lab.spawn(ns, name, [
      BUN,
      join(HERE, "healthz-probe.ts"),
      `http://127.0.0.1:${port}/healthz`,
      String(everyMs),
    ]);
  }

  /** Stops it; its probes as [start epoch ms, latency ms, status]. */
  async stop(): Promise<[number, number, number][]> {
    await Bun.sleep(50);
    this.#p.proc.kill("SIGTERM");
    await this.#p.proc.exited;
    const text = await this.#lab.log(this.#p);
    const line = text.trim().split("\n").at(-1) ?? "{}";
    return (JSON.parse(line) as { probes?: [number, number, number][] }).probes ?? [];
  }
}

/** Worst, p99 and count of the probes started in [from, to] that got an answer (or 0 for none). */
export function healthzFigures(
  probes: readonly [number, number, number][],
  from: number,
  to: number,
): { worst: number; p99: number; count: number; failed: number } {
  const inside = probes.filter(([at]) => at >= from && at <= to);
  const ms = inside.map(([, l]) => l).sort((a, b) => a - b);
  return {
    worst: ms.at(-1) ?? Number.NaN,
    p99: ms.length ? ms[Math.min(ms.length - 1, Math.floor(ms.length * 0.99))]! : Number.NaN,
    count: ms.length,
    failed: inside.filter(([, , s]) => s !== 200).length,
  };
}

/** Runs a bench helper script to completion in `ns`; returns its last output line as JSON. */
export async function runHelper<T>(lab: Lab, ns: string, name: string, args: string[]): Promise<T> {
  const p = lab.spawn(ns, name, [BUN, join(HERE, args[0]!), ...args.slice(1)]);
  const code = await p.proc.exited;
  const text = await lab.log(p);
  if (code !== 0) throw new Error(`${args[0]} exited ${code}:\n${text.slice(-2000)}`);
  return JSON.parse(text.trim().split("\n").at(-1)!) as T;
}
