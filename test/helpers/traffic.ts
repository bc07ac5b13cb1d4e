/**
 * Real traffic between test namespaces: TCP bulk and UDP through iperf3 (servers started
 * as lab processes, one test each), and "who am I" TCP to see the source address a peer
 * observes (masquerading). Every helper returns numbers; tests decide what passes.
 */
import type { Lab } from "./netns.ts";
import { until } from "./netns.ts";

let nextPort = 5300;

interface IperfJson {
  end?: {
    sum_sent?: { bytes: number };
    sum_received?: { bytes: number };
    sum?: { packets?: number; lost_packets?: number; bytes?: number };
  };
  error?: string;
}

async function iperf(
  lab: Lab,
  fromNs: string,
  toNs: string,
  toIp: string,
  clientArgs: string[],
): Promise<IperfJson> {
  const port = nextPort++;
  const server = lab.spawn(toNs, `iperf3-s-${port}`, ["iperf3", "-s", "-1", "-p", String(port)]);
  try {
    return await until(
      async () => {
        const r = await lab.exec(fromNs, [
          "iperf3",
          "-c",
          toIp,
          "-p",
          String(port),
          "-J",
          "--connect-timeout",
          "2000",
          ...clientArgs,
        ]);
        const j = JSON.parse(r.stdout || "{}") as IperfJson;
        if (j.error && /Connection refused|unable to connect/i.test(j.error)) return undefined;
        return j;
      },
      `iperf3 to ${toIp}:${port}`,
      30_000,
    );
  } finally {
    await lab.stop(server, "SIGKILL");
  }
}

/**
 * An exact TCP transfer of `bytes` from one namespace to another: returns the byte count
 * the receiver saw at EOF (0 when the connection failed). Broken GSO shows as a stall.
 */
export async function tcpBulk(
  lab: Lab,
  fromNs: string,
  toNs: string,
  toIp: string,
  bytes: number,
): Promise<number> {
  const port = nextPort++;
  const script = `${import.meta.dir}/bulk.ts`;
  const host = toIp.includes(":") ? ["::"] : [];
  const server = lab.spawn(toNs, `bulk-s-${port}`, [
    process.execPath,
    script,
    "server",
    String(port),
    ...host,
  ]);
  try {
    await until(async () => (await lab.log(server)).includes("listening"), `bulk server in ${toNs}`, 10_000);
    const r = await lab.exec(fromNs, [
      "timeout",
      "60",
      process.execPath,
      script,
      "client",
      toIp,
      String(port),
      String(bytes),
    ]);
    return Number(r.stdout.trim()) || 0;
  } finally {
    await lab.stop(server, "SIGKILL");
  }
}

/** The namespace's UDP RcvbufErrors (/proc/net/snmp): datagrams dropped because a socket's buffer was full. */
async function udpRcvbufErrors(lab: Lab, ns: string): Promise<number> {
  const rows = (await lab.must(ns, ["cat", "/proc/net/snmp"]))
    .split("\n")
    .filter((l) => l.startsWith("Udp:"));
  const names = rows[0]?.split(/\s+/) ?? [];
  const values = rows[1]?.split(/\s+/) ?? [];
  const i = names.indexOf("RcvbufErrors");
  if (i < 0) throw new Error(`no Udp RcvbufErrors in /proc/net/snmp of ${ns}`);
  return Number(values[i]);
}

/**
 * UDP datagrams sent and lost for a short paced stream (20 Mbit/s, 1 MB), and how many
 * of the lost ones the receiver's own socket dropped because its buffer was full
 * (`overflowed`: the kernel's SOCKET_RCVBUFF drop, an iperf3 not scheduled in time on a
 * loaded machine — delivered by the network, not read by the process).
 */
export async function udpStream(
  lab: Lab,
  fromNs: string,
  toNs: string,
  toIp: string,
): Promise<{ packets: number; lost: number; overflowed: number }> {
  const before = await udpRcvbufErrors(lab, toNs);
  const j = await iperf(lab, fromNs, toNs, toIp, ["-u", "-b", "20M", "-n", "1M", "-l", "1200"]);
  if (j.error) throw new Error(`iperf3 UDP to ${toIp}: ${j.error}`);
  const overflowed = (await udpRcvbufErrors(lab, toNs)) - before;
  return { packets: j.end?.sum?.packets ?? 0, lost: j.end?.sum?.lost_packets ?? 0, overflowed };
}

/** Starts a who-am-I server in `ns` (on IPv6 too with `ipv6`); returns its port. */
export function startWhoami(lab: Lab, ns: string, port = 7000, opts: { ipv6?: boolean } = {}): number {
  const host = opts.ipv6 ? ["::"] : [];
  lab.spawn(ns, `whoami-${port}`, [
    process.execPath,
    `${import.meta.dir}/whoami-server.ts`,
    String(port),
    ...host,
  ]);
  return port;
}

/** The source address the who-am-I server at ip:port saw for a connection from `ns`. */
export async function whoami(lab: Lab, ns: string, ip: string, port: number): Promise<string> {
  return until(
    async () => {
      const r = await lab.exec(ns, ["bash", "-c", `exec 3<>/dev/tcp/${ip}/${port} && timeout 3 cat <&3`]);
      const addr = r.stdout.trim();
      return r.code === 0 && addr ? addr : undefined;
    },
    `who-am-I at ${ip}:${port} from ${ns}`,
    10_000,
  );
}
