/**
 * One measurement each, pod to pod: TCP throughput (iperf3, 1 and 4 streams), UDP
 * 64-byte packets received per second (iperf3 -u -l 64 -b 0), round-trip latency
 * percentiles two ways (ICMP echo answered by the server pod's kernel, and TCP
 * request/response with both ends pinned to one CPU), each from many short runs, and CPU
 * time spent per gigabit (all cores, from /proc/stat, across the TCP run: both nodes live
 * on this machine).
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
    const r = await t.lab.exec(t.client.ns, ["iperf3", "-c", t.target, "-p", String(p), "-J", ...args]);
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
  /** Median over the short runs of each run's p50, µs. */
  p50us: number;
  /** Median over the short runs of each run's p99, µs. */
  p99us: number;
  /** Round trips behind it (all runs). */
  samples: number;
}

/** The q-quantile of unsorted samples (nearest rank). */
function quantile(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))]! : Number.NaN;
}

const median = (xs: readonly number[]) => quantile(xs, 0.5);

/**
 * ICMP echo round trips, kernel to kernel (the server pod's kernel answers; nothing is
 * scheduled there): `runs` short runs of `count` back-to-back pings (`ping -i 0`, one
 * outstanding), each run's p50 and p99 from the per-packet times (1 µs resolution), the
 * medians over the runs reported. Short runs and medians keep one bad stretch (another
 * process on the machine) from moving the figure.
 */
export async function pingRtt(t: Topology, runs = 9, count = 2000): Promise<LatencyResult> {
  const p50s: number[] = [];
  const p99s: number[] = [];
  let samples = 0;
  for (let i = 0; i < runs; i++) {
    const r = await t.lab.exec(t.client.ns, [
      "ping",
      "-n",
      "-i",
      "0",
      "-c",
      String(count),
      "-W",
      "1",
      t.target,
    ]);
    const us = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]) * 1000);
    if (us.length < count / 2) throw new Error(`ping ${t.target}: ${us.length} of ${count} answered`);
    p50s.push(quantile(us, 0.5));
    p99s.push(quantile(us, 0.99));
    samples += us.length;
  }
  return { p50us: median(p50s), p99us: median(p99s), samples };
}

/**
 * TCP request/response (sockperf ping-pong, 64-byte messages, full round trips) with both
 * ends pinned to CPU 0 (`taskset`), so the whole round trip — both applications, both
 * stacks, the datapath's softirqs — runs on one CPU: unpinned, the figure swings between
 * about 25 and 120 µs on a 2-vCPU VM with where the scheduler puts the two ends (measured:
 * bench/DATAPATH.md). `runs` short runs of `seconds` each; medians of their p50 and p99.
 */
export async function tcpRr(t: Topology, runs = 5, seconds = 1): Promise<LatencyResult> {
  const p50s: number[] = [];
  const p99s: number[] = [];
  let samples = 0;
  const p = port++;
  const pin = ["taskset", "-c", "0"];
  await withServer(t, [...pin, "sockperf", "server", "--tcp", "-i", t.target, "-p", String(p)], async () => {
    for (let i = 0; i < runs; i++) {
      for (let attempt = 0; ; attempt++) {
        const r = await t.lab.exec(t.client.ns, [
          ...pin,
          "sockperf",
          "ping-pong",
          "--tcp",
          "-i",
          t.target,
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
        if (!Number.isNaN(pct("50.000"))) {
          p50s.push(pct("50.000"));
          p99s.push(pct("99.000"));
          samples += Number(/\[Valid Duration\][^\n]*?SentMessages=(\d+)/.exec(out)?.[1] ?? 0);
          break;
        }
        if (attempt >= 20) throw new Error(`sockperf produced no percentiles: ${out.slice(-300)}`);
        await Bun.sleep(200);
      }
    }
  });
  return { p50us: median(p50s), p99us: median(p99s), samples };
}
