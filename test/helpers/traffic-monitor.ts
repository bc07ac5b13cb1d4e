/**
 * Continuous traffic across a cluster while a fault is injected: one ping flow per node
 * (pod on node i → pod on node i+1, 100 packets/s, `ping -i 0.01 -D -O`, parsed for
 * sequence gaps) and one paced TCP stream (pod on node 0 → pod on node 1) whose byte
 * count is checked exactly at the end. `stop()` returns what was sent, what was lost and
 * the longest gap; tests decide what passes.
 *
 * This file is also the TCP stream's two ends, run inside pod namespaces:
 *   bun traffic-monitor.ts tcp-server PORT              counts bytes, prints a JSON report at EOF
 *   bun traffic-monitor.ts tcp-client IP PORT BYTES/S   sends paced data until SIGTERM, then
 *                                                       half-closes and prints a JSON report
 * and a bounded UDP sender for hostile-packet tests:
 *   bun traffic-monitor.ts udp-send IP PORT COUNT MAX_MS FILE|random
 *       sends COUNT datagrams (cycling through FILE's length-prefixed payloads, or random
 *       ones of 1..1400 bytes), stopping early at MAX_MS; prints {"sent":N,"ms":T}
 */
import net from "node:net";
import type { Lab, LabProcess } from "./netns.ts";
import { until } from "./netns.ts";

/** ping interval: 100 packets/s. */
const PING_INTERVAL_S = 0.01;
/** Sequence numbers this close to the last one sent are still in flight at stop(): not judged. */
const TAIL = 20;

export interface PingFlow {
  readonly from: string;
  readonly to: string;
  sent: number;
  received: number;
  lost: number;
  /** Longest run of consecutive unanswered sequence numbers, in ms (run × interval). */
  longestGapMs: number;
  /**
   * Longest time between two consecutive answers, ms (from ping's -D timestamps). Unlike
   * longestGapMs it is right when ping slowed down: iputils ping sends less often while it
   * gets ICMP errors back, so a link outage shows fewer sequence numbers than seconds.
   */
  longestSilenceMs: number;
  /** The unanswered sequence numbers (first 50), for a failing test's message. */
  missing: number[];
}

export interface TcpReport {
  /** Bytes the client wrote. */
  sent: number;
  /** Bytes the server counted at EOF (null when no report: the stream broke). */
  received: number | null;
  /** Longest time the receiver saw no data while the sender was pacing, ms. */
  longestStallMs: number;
  error: string | null;
}

export interface MonitorReport {
  readonly durationMs: number;
  readonly flows: PingFlow[];
  readonly tcp: TcpReport;
  /** Totals over the ping flows. */
  readonly sent: number;
  readonly lost: number;
  readonly longestGapMs: number;
  readonly longestSilenceMs: number;
  /** true when the TCP stream delivered every byte it sent without an error. */
  readonly tcpIntact: boolean;
}

interface Endpoint {
  readonly ns: string;
  readonly ip: string;
}

export interface MonitorNode {
  readonly ns: string;
  readonly pods: readonly Endpoint[];
}

let nextPort = 6100;

/** Parses `ping -D -O` output into one flow's numbers. */
export function parsePing(out: string, from: string, to: string): PingFlow {
  const answered = new Set<number>();
  let maxSeq = 0;
  let transmitted: number | null = null;
  let lastAnswer: number | null = null;
  let silence = 0;
  for (const line of out.split("\n")) {
    const r = /icmp_seq=(\d+)/.exec(line);
    if (r) {
      const seq = Number(r[1]);
      if (seq > maxSeq) maxSeq = seq;
      if (/bytes from/.test(line)) {
        answered.add(seq);
        const ts = /^\[(\d+\.\d+)\]/.exec(line);
        if (ts) {
          const t = Number(ts[1]) * 1000;
          if (lastAnswer !== null && t - lastAnswer > silence) silence = t - lastAnswer;
          lastAnswer = t;
        }
      }
      continue;
    }
    const t = /(\d+) packets transmitted/.exec(line);
    if (t) transmitted = Number(t[1]);
  }
  if (transmitted !== null && transmitted > maxSeq) maxSeq = transmitted;
  const judged = Math.max(0, maxSeq - TAIL);
  const missing: number[] = [];
  let run = 0;
  let longest = 0;
  let lost = 0;
  for (let s = 1; s <= judged; s++) {
    if (answered.has(s)) {
      run = 0;
      continue;
    }
    lost++;
    if (missing.length < 50) missing.push(s);
    run++;
    if (run > longest) longest = run;
  }
  return {
    from,
    to,
    sent: judged,
    received: judged - lost,
    lost,
    longestGapMs: Math.round(longest * PING_INTERVAL_S * 1000),
    longestSilenceMs: Math.round(silence),
    missing,
  };
}

export class TrafficMonitor {
  readonly #lab: Lab;
  readonly #pings: { p: LabProcess; from: string; to: string }[] = [];
  #server: LabProcess | null = null;
  #client: LabProcess | null = null;
  readonly #started = Date.now();

  private constructor(lab: Lab) {
    this.#lab = lab;
  }

  /**
   * Starts the flows over `nodes` (at least two, each with a pod) and waits until every
   * flow carries traffic. `tcpRate` in bytes/s (default 4 MB/s; 0 = no TCP stream).
   */
  static async start(lab: Lab, nodes: readonly MonitorNode[], opts: { tcpRate?: number } = {}) {
    if (nodes.length < 2) throw new Error("TrafficMonitor needs at least two nodes");
    const m = new TrafficMonitor(lab);
    try {
      for (let i = 0; i < nodes.length; i++) {
        const a = nodes[i]!.pods[0]!;
        const b = nodes[(i + 1) % nodes.length]!.pods[0]!;
        // every flow must work before we count: the fault comes after
        await until(
          async () => (await lab.exec(a.ns, ["ping", "-n", "-c", "1", "-W", "1", b.ip])).code === 0,
          `ping ${a.ip} → ${b.ip} before the monitor starts`,
          20_000,
        );
        const p = lab.spawn(a.ns, `ping-${a.ip}-${b.ip}-${Date.now()}`, [
          "ping",
          "-n",
          "-D",
          "-O",
          "-i",
          String(PING_INTERVAL_S),
          b.ip,
        ]);
        m.#pings.push({ p, from: a.ip, to: b.ip });
      }
      const rate = opts.tcpRate ?? 4_000_000;
      if (rate > 0) {
        const src = nodes[0]!.pods[0]!;
        const dst = nodes[1]!.pods[0]!;
        const port = nextPort++;
        const self = import.meta.path;
        m.#server = lab.spawn(dst.ns, `tcp-server-${port}`, [
          process.execPath,
          self,
          "tcp-server",
          String(port),
        ]);
        await until(
          async () => (await lab.log(m.#server!)).includes("listening"),
          `the TCP stream's server in ${dst.ns}`,
          10_000,
        );
        m.#client = lab.spawn(src.ns, `tcp-client-${port}`, [
          process.execPath,
          self,
          "tcp-client",
          dst.ip,
          String(port),
          String(rate),
        ]);
        await until(
          async () => (await lab.log(m.#client!)).includes("connected"),
          `the TCP stream ${src.ip} → ${dst.ip}:${port}`,
          10_000,
        );
      }
      // every ping flow has had an answer
      await until(
        async () => {
          for (const f of m.#pings) if (!/bytes from/.test(await lab.log(f.p))) return false;
          return true;
        },
        "the first ping answers",
        10_000,
      );
    } catch (e) {
      await m.stop().catch(() => {});
      throw e;
    }
    return m;
  }

  /** Stops every flow (graceful: ping prints its summary, the TCP client half-closes) and reports. */
  async stop(): Promise<MonitorReport> {
    // let answers to the last pings arrive before ping stops
    await Bun.sleep(300);
    for (const f of this.#pings) await this.#lab.stop(f.p, "SIGINT", 3000);
    const flows: PingFlow[] = [];
    for (const f of this.#pings) flows.push(parsePing(await this.#lab.log(f.p), f.from, f.to));
    let tcp: TcpReport = { sent: 0, received: 0, longestStallMs: 0, error: null };
    if (this.#client && this.#server) {
      // the client half-closes, waits for the server's count (20 s at most) and exits
      await this.#lab.stop(this.#client, "SIGTERM", 25_000);
      await this.#lab.stop(this.#server, "SIGTERM", 3000);
      const c = lastJson(await this.#lab.log(this.#client));
      const s = lastJson(await this.#lab.log(this.#server));
      tcp = {
        sent: Number(c?.sent ?? 0),
        received: c?.received === undefined || c.received === null ? null : Number(c.received),
        longestStallMs: Number(s?.longestStallMs ?? 0),
        error: typeof c?.error === "string" ? c.error : c ? null : "the TCP client printed no report",
      };
    }
    const sent = flows.reduce((n, f) => n + f.sent, 0);
    const lost = flows.reduce((n, f) => n + f.lost, 0);
    return {
      durationMs: Date.now() - this.#started,
      flows,
      tcp,
      sent,
      lost,
      longestGapMs: Math.max(0, ...flows.map((f) => f.longestGapMs)),
      longestSilenceMs: Math.max(0, ...flows.map((f) => f.longestSilenceMs)),
      tcpIntact: this.#client === null || (tcp.error === null && tcp.received === tcp.sent && tcp.sent > 0),
    };
  }
}

function lastJson(log: string): Record<string, unknown> | null {
  const lines = log.trim().split("\n").reverse();
  for (const l of lines) {
    if (!l.startsWith("{")) continue;
    try {
      return JSON.parse(l) as Record<string, unknown>;
    } catch {}
  }
  return null;
}

/** A one-line summary for logs and failing assertions. */
export function summary(r: MonitorReport): string {
  const flows = r.flows.map((f) => `${f.from}→${f.to} ${f.lost}/${f.sent} lost, gap ${f.longestGapMs}ms`);
  return `ping ${r.lost}/${r.sent} lost (longest gap ${r.longestGapMs} ms, longest silence ${r.longestSilenceMs} ms; ${flows.join("; ")}); tcp ${r.tcp.received ?? "?"}/${r.tcp.sent} bytes, stall ${r.tcp.longestStallMs} ms${r.tcp.error ? `, error: ${r.tcp.error}` : ""}`;
}

// ---- the TCP stream's ends (run as a script inside pod namespaces) ----

function tcpServer(port: number): void {
  const srv = net.createServer((s) => {
    let n = 0;
    let last = Date.now();
    let longest = 0;
    const report = () => console.log(JSON.stringify({ received: n, longestStallMs: longest }));
    s.on("data", (d) => {
      const now = Date.now();
      if (n > 0 && now - last > longest) longest = now - last;
      last = now;
      n += d.length;
    });
    s.on("end", () => {
      report();
      s.end(`${n}\n`);
      srv.close();
    });
    s.on("error", (e) => {
      console.log(JSON.stringify({ received: n, longestStallMs: longest, error: e.message }));
    });
    process.on("SIGTERM", () => {
      report();
      process.exit(0);
    });
  });
  srv.listen(port, "0.0.0.0", () => console.log("listening"));
}

function tcpClient(ip: string, port: number, rate: number): void {
  const tickMs = 10;
  const chunk = Buffer.alloc(Math.max(1, Math.floor((rate * tickMs) / 1000)), 0x5a);
  let sent = 0;
  let error: string | null = null;
  let reply = "";
  let done = false;
  const s = net.connect(port, ip);
  const finish = (received: number | null) => {
    if (done) return;
    done = true;
    console.log(JSON.stringify({ sent, received, error }));
    process.exit(0);
  };
  let timer: ReturnType<typeof setInterval> | null = null;
  s.on("connect", () => {
    console.log("connected");
    timer = setInterval(() => {
      // paced: skip a tick while the socket is backed up (that is a stall, seen by the server)
      if (s.writableNeedDrain) return;
      s.write(chunk);
      sent += chunk.length;
    }, tickMs);
  });
  s.on("data", (d) => {
    reply += d;
  });
  s.on("error", (e) => {
    error = e.message;
    finish(null);
  });
  s.on("close", () => {
    const n = Number(reply.trim());
    if (!reply.trim() && !error) error = "the connection closed without the server's count";
    finish(reply.trim() ? n : null);
  });
  process.on("SIGTERM", () => {
    if (timer) clearInterval(timer);
    s.end();
    setTimeout(() => {
      error ??= "no count from the server within 20 s of the half-close";
      finish(null);
    }, 20_000);
  });
}

/** Length-prefixed (u32 BE) payloads, the udp-send file format. */
export function encodePayloads(payloads: readonly Uint8Array[]): Uint8Array {
  const out: number[] = [];
  for (const p of payloads) {
    out.push((p.length >>> 24) & 255, (p.length >>> 16) & 255, (p.length >>> 8) & 255, p.length & 255, ...p);
  }
  return Uint8Array.from(out);
}

function decodePayloads(b: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let o = 0; o + 4 <= b.length; ) {
    const n = ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
    out.push(b.subarray(o + 4, o + 4 + n));
    o += 4 + n;
  }
  return out;
}

async function udpSend(ip: string, port: number, count: number, maxMs: number, source: string) {
  const fixed =
    source === "random" ? null : decodePayloads(new Uint8Array(await Bun.file(source).arrayBuffer()));
  const sock = await Bun.udpSocket({});
  const t0 = Date.now();
  let sent = 0;
  let refused = 0;
  let seed = 0x2545f491;
  const rnd = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return seed >>> 0;
  };
  const random = () => {
    const b = new Uint8Array(1 + (rnd() % 1400));
    for (let i = 0; i < b.length; i++) b[i] = rnd() & 255;
    return b;
  };
  while (sent < count && Date.now() - t0 < maxMs) {
    const p = fixed ? fixed[sent % fixed.length]! : random();
    try {
      if (sock.send(p, port, ip)) sent++;
      else await Bun.sleep(1);
    } catch {
      // an ICMP port unreachable from the target surfaces as ECONNREFUSED on a later send
      // (that datagram is not sent): count it and go on
      refused++;
    }
  }
  sock.close();
  console.log(JSON.stringify({ sent, refused, ms: Date.now() - t0 }));
}

if (import.meta.main) {
  const [mode, a, b, c] = process.argv.slice(2);
  if (mode === "tcp-server") tcpServer(Number(a));
  else if (mode === "tcp-client") tcpClient(a!, Number(b), Number(c));
  else if (mode === "udp-send") {
    const [, , , , maxMs, source] = process.argv.slice(2);
    await udpSend(a!, Number(b), Number(c), Number(maxMs), source ?? "random");
  } else {
    console.error(
      "usage: traffic-monitor.ts tcp-server PORT | tcp-client IP PORT BYTES_PER_S | udp-send IP PORT COUNT MAX_MS FILE|random",
    );
    process.exit(2);
  }
}
