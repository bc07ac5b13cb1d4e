/**
 * One measurement each, pod to pod: TCP throughput (iperf3, 1 and 4 streams), UDP
 * 64-byte packets received per second (iperf3 -u -l 64 -b 0), request/response latency
 * percentiles (sockperf ping-pong, full round trips), and CPU time spent per gigabit
 * (all cores, from /proc/stat, across the TCP run: both nodes live on this machine).
 */
import { readFileSync } from "node:fs";
import type { Topology } from "./topologies.ts";

let port = 6100;

function cpuBusyJiffies(): number {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  const idle = f[3]! + f[4]!;
  return f.slice(0, 8).reduce((a, b) => a + b, 0) - idle;
}

async function withServer<T>(t: Topology, cmd: string[], fn: () => Promise<T>): Promise<T> {
  const server = t.lab.spawn(t.server.ns, `srv-${port}`, cmd);
  try {
    await Bun.sleep(300); // servers print nothing reliable on start; clients retry below anyway
    return await fn();
  } finally {
    await t.lab.stop(server, "SIGKILL");
  }
}

interface IperfEnd {
  end?: {
    sum_received?: { bits_per_second: number; bytes: number };
    sum?: { packets?: number; lost_packets?: number; seconds?: number };
  };
  error?: string;
}

async function iperfClient(t: Topology, p: number, args: string[]): Promise<IperfEnd> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const r = await t.lab.exec(t.client.ns, ["iperf3", "-c", t.server.ip, "-p", String(p), "-J", ...args]);
    const j = JSON.parse(r.stdout || "{}") as IperfEnd;
    if (!j.error) return j;
    if (!/refused|unable to connect|busy/i.test(j.error))
      throw new Error(`iperf3 ${args.join(" ")}: ${j.error}`);
    await Bun.sleep(200);
  }
  throw new Error("iperf3 server never answered");
}

export interface TcpResult {
  gbps: number;
  cpuSecPerGbit: number;
}

export async function tcp(t: Topology, streams: number, seconds: number): Promise<TcpResult> {
  const p = port++;
  return withServer(t, ["iperf3", "-s", "-1", "-p", String(p)], async () => {
    const c0 = cpuBusyJiffies();
    const j = await iperfClient(t, p, ["-t", String(seconds), "-P", String(streams)]);
    const cpuSec = (cpuBusyJiffies() - c0) / 100;
    const bits = (j.end?.sum_received?.bytes ?? 0) * 8;
    return {
      gbps: (j.end?.sum_received?.bits_per_second ?? 0) / 1e9,
      cpuSecPerGbit: bits > 0 ? cpuSec / (bits / 1e9) : Number.NaN,
    };
  });
}

/** 64-byte UDP datagrams received per second (thousands). */
export async function udp64(t: Topology, seconds: number): Promise<number> {
  const p = port++;
  return withServer(t, ["iperf3", "-s", "-1", "-p", String(p)], async () => {
    const j = await iperfClient(t, p, ["-u", "-l", "64", "-b", "0", "-t", String(seconds)]);
    const s = j.end?.sum;
    if (!s?.packets || !s.seconds) return 0;
    return (s.packets - (s.lost_packets ?? 0)) / s.seconds / 1000;
  });
}

export interface LatencyResult {
  p50us: number;
  p99us: number;
  samples: number;
}

/** sockperf TCP ping-pong of 64-byte messages, full round trips. */
export async function latency(t: Topology, seconds: number): Promise<LatencyResult> {
  const p = port++;
  return withServer(t, ["sockperf", "server", "--tcp", "-i", t.server.ip, "-p", String(p)], async () => {
    for (let attempt = 0; attempt < 20; attempt++) {
      const r = await t.lab.exec(t.client.ns, [
        "sockperf",
        "ping-pong",
        "--tcp",
        "-i",
        t.server.ip,
        "-p",
        String(p),
        "-m",
        "64",
        "-t",
        String(seconds),
        "--full-rtt",
      ]);
      const out = r.stdout + r.stderr;
      const pct = (q: string) =>
        Number(new RegExp(`percentile ${q} =\\s+([\\d.]+)`).exec(out)?.[1] ?? Number.NaN);
      const samples = Number(
        /\[Valid Duration\][^\n]*?SentMessages=(\d+)/.exec(out)?.[1] ??
          /(\d+) observations/.exec(out)?.[1] ??
          0,
      );
      if (!Number.isNaN(pct("50.000"))) return { p50us: pct("50.000"), p99us: pct("99.000"), samples };
      await Bun.sleep(200);
    }
    throw new Error("sockperf produced no percentiles");
  });
}
