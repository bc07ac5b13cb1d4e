/**
 * Test hosts as network namespaces: a lab owns a run-unique name prefix, an underlay
 * bridge namespace (198.18.0.0/16; fd00:18::/64 for dual-stack hosts), node namespaces
 * wired to it by veth, the processes
 * it starts and its temp dir — and removes every one of them in cleanup(), also after a
 * failure. Nothing is configured in the root namespace.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface LabProcess {
  readonly name: string;
  readonly proc: Subprocess<"ignore", "pipe" | "ignore", "pipe" | "ignore">;
  readonly logPath: string;
}

const labs = new Set<Lab>();
let exitHooked = false;

function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  // Last resort: a crashed test run still removes its namespaces and processes.
  process.on("exit", () => {
    for (const lab of labs) lab.cleanupSync();
  });
}

export function run(cmd: string[], input?: string): Promise<ExecResult> {
  const p = Bun.spawn(cmd, {
    stdin: input === undefined ? "ignore" : new TextEncoder().encode(input),
    stdout: "pipe",
    stderr: "pipe",
  });
  return Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]).then(
    ([stdout, stderr, code]) => ({
      code,
      stdout,
      stderr,
    }),
  );
}

export async function must(cmd: string[], input?: string): Promise<string> {
  const r = await run(cmd, input);
  if (r.code !== 0)
    throw new Error(`${cmd.join(" ")} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

/** Thrown inside an `until` callback to stop polling at once (the awaited thing can no longer happen). */
export class StopPolling extends Error {
  override name = "StopPolling";
}

/** Polls `fn` until it returns a value other than undefined/false, or throws after `ms`. */
export async function until<T>(
  fn: () => Promise<T | undefined | false> | T | undefined | false,
  what: string,
  ms = 15_000,
): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v as T;
    } catch (e) {
      if (e instanceof StopPolling) throw e;
      last = e;
    }
    if (Date.now() > end)
      throw new Error(
        `timed out after ${ms} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`,
      );
    await Bun.sleep(50);
  }
}

export class Lab {
  readonly prefix: string;
  readonly dir: string;
  readonly namespaces: string[] = [];
  readonly processes: LabProcess[] = [];
  readonly bpffsDirs: string[] = [];
  #underlay: string | null = null;
  #nodes = 0;

  constructor(tag: string) {
    // short, run-unique: namespaces of parallel runs never collide
    this.prefix = `t${tag}${process.pid.toString(36)}${Math.floor(Math.random() * 36 ** 3).toString(36)}`;
    this.dir = mkdtempSync(join(tmpdir(), `tartan-${this.prefix}-`));
    labs.add(this);
    hookExit();
  }

  /** Command prefix that runs inside a namespace without remounting /sys (bpffs stays visible). */
  nsCmd(ns: string, cmd: string[]): string[] {
    return ["nsenter", `--net=/run/netns/${ns}`, "--", ...cmd];
  }

  exec(ns: string, cmd: string[], input?: string): Promise<ExecResult> {
    return run(this.nsCmd(ns, cmd), input);
  }

  must(ns: string, cmd: string[], input?: string): Promise<string> {
    return must(this.nsCmd(ns, cmd), input);
  }

  async addNamespace(name: string): Promise<string> {
    const ns = `${this.prefix}-${name}`;
    await must(["ip", "netns", "add", ns]);
    this.namespaces.push(ns);
    await this.must(ns, ["ip", "link", "set", "lo", "up"]);
    return ns;
  }

  async deleteNamespace(ns: string): Promise<void> {
    await must(["ip", "netns", "del", ns]);
    this.namespaces.splice(this.namespaces.indexOf(ns), 1);
  }

  /** The underlay: one namespace holding bridge br0 that every node's eth0 plugs into. */
  async underlay(): Promise<string> {
    if (this.#underlay) return this.#underlay;
    const ns = await this.addNamespace("ul");
    await this.must(ns, ["ip", "link", "add", "br0", "type", "bridge"]);
    await this.must(ns, ["ip", "link", "set", "br0", "up"]);
    this.#underlay = ns;
    return ns;
  }

  /**
   * A namespace whose eth0 (MTU `mtu`) is plugged into the underlay bridge with address
   * `ip`/16 — and `ip6`/64 when given, without duplicate address detection (a tentative
   * address cannot be used for the second DAD takes, and nothing else on the lab's
   * underlay holds it).
   */
  async addHost(name: string, ip: string, mtu = 1500, ip6?: string): Promise<string> {
    const ul = await this.underlay();
    const ns = await this.addNamespace(name);
    const port = `v${name}`.slice(0, 15);
    await must(["ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", ul]);
    await this.must(ul, ["ip", "link", "set", port, "master", "br0", "mtu", String(mtu), "up"]);
    await this.must(ns, ["ip", "link", "set", "eth0", "mtu", String(mtu), "up"]);
    await this.must(ns, ["ip", "addr", "add", `${ip}/16`, "dev", "eth0"]);
    if (ip6) await this.must(ns, ["ip", "addr", "add", `${ip6}/64`, "dev", "eth0", "nodad"]);
    return ns;
  }

  /** A node namespace with eth0 = 198.18.0.<n>/16 on the underlay bridge (and fd00:18::<n>/64 with `ipv6`). */
  async addNode(
    opts: { mtu?: number; ipv6?: boolean } = {},
  ): Promise<{ ns: string; ip: string; ip6?: string; index: number }> {
    const index = ++this.#nodes;
    const ip = `198.18.0.${index}`;
    const ip6 = opts.ipv6 ? `fd00:18::${index.toString(16)}` : undefined;
    const ns = await this.addHost(`n${index}`, ip, opts.mtu, ip6);
    return ip6 ? { ns, ip, ip6, index } : { ns, ip, index };
  }

  /** Starts a long-running process inside a namespace, its output in a log file under the lab dir. */
  spawn(ns: string, name: string, cmd: string[], env: Record<string, string> = {}): LabProcess {
    const logPath = join(this.dir, `${name}.log`);
    const out = Bun.file(logPath);
    // pdeathsig: the process dies with the test runner even if cleanup never runs
    const proc = Bun.spawn(["setpriv", "--pdeathsig", "SIGKILL", ...this.nsCmd(ns, cmd)], {
      stdin: "ignore",
      stdout: out,
      stderr: out,
      env: { ...process.env, ...env },
    }) as unknown as LabProcess["proc"];
    const p = { name, proc, logPath };
    this.processes.push(p);
    return p;
  }

  async log(p: LabProcess): Promise<string> {
    return (await Bun.file(p.logPath).exists()) ? Bun.file(p.logPath).text() : "";
  }

  /** Stops one process by its PID (SIGTERM, then SIGKILL after `graceMs`). */
  async stop(p: LabProcess, signal: NodeJS.Signals = "SIGTERM", graceMs = 5000): Promise<number | null> {
    if (p.proc.exitCode !== null || p.proc.signalCode !== null) return p.proc.exitCode;
    p.proc.kill(signal);
    const t = setTimeout(() => p.proc.kill("SIGKILL"), graceMs);
    await p.proc.exited;
    clearTimeout(t);
    return p.proc.exitCode;
  }

  /** GET on an agent's status endpoint from inside its namespace. */
  async http(ns: string, path: string, port = 8471): Promise<{ status: number; body: string }> {
    const r = await this.exec(ns, [
      "curl",
      "-s",
      "-m",
      "3",
      "-o",
      "-",
      "-w",
      "\n%{http_code}",
      `http://127.0.0.1:${port}${path}`,
    ]);
    const nl = r.stdout.lastIndexOf("\n");
    return { status: Number(r.stdout.slice(nl + 1)) || 0, body: r.stdout.slice(0, nl) };
  }

  async cleanup(): Promise<void> {
    for (const p of this.processes) {
      if (p.proc.exitCode === null && p.proc.signalCode === null) {
        p.proc.kill("SIGKILL");
        await p.proc.exited;
      }
    }
    for (const ns of this.namespaces.reverse()) await run(["ip", "netns", "del", ns]);
    for (const d of this.bpffsDirs) rmSync(d, { recursive: true, force: true });
    rmSync(this.dir, { recursive: true, force: true });
    this.namespaces.length = 0;
    labs.delete(this);
  }

  cleanupSync(): void {
    for (const p of this.processes) if (p.proc.exitCode === null) p.proc.kill("SIGKILL");
    for (const ns of this.namespaces) Bun.spawnSync(["ip", "netns", "del", ns]);
    for (const d of this.bpffsDirs) rmSync(d, { recursive: true, force: true });
    rmSync(this.dir, { recursive: true, force: true });
  }
}
