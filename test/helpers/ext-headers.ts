/**
 * IPv6 traffic with extension headers between pods, for the dual-stack e2e tests: UDP
 * echoes and a TCP transfer whose every packet (both ways, ACKs included) carries a
 * hop-by-hop or destination-options header, set as sticky socket options (python3's
 * socket module; no raw packets), and UDP datagrams larger than the MTU, which the
 * sending pod's kernel fragments.
 */
import type { Lab } from "./netns.ts";
import { until } from "./netns.ts";

/** Which extension header every packet carries: destination options, hop-by-hop, or none. */
export type ExtHeader = "dst" | "hop" | "none";

/*
 * argv: server udp|tcp PORT EXT  |  client udp|tcp ADDR PORT EXT SIZE COUNT
 * The header: next header (the kernel fills it in), length 0 (8 bytes), a PadN option of 4.
 * server udp echoes every datagram; server tcp counts one connection's bytes and answers
 * the count. client udp prints how many of COUNT echoes came back whole; client tcp sends
 * SIZE bytes and prints the count the server answered.
 */
const SCRIPT = `
import socket, sys
EXT = bytes([0, 0, 1, 4, 0, 0, 0, 0])
def ext(s, kind):
    if kind == "dst": s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_DSTOPTS, EXT)
    elif kind == "hop": s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_HOPOPTS, EXT)
role, proto = sys.argv[1], sys.argv[2]
kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
if role == "server":
    port, k = int(sys.argv[3]), sys.argv[4]
    s = socket.socket(socket.AF_INET6, kind); ext(s, k)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("::", port))
    if proto == "udp":
        print("listening", flush=True)
        while True:
            b, a = s.recvfrom(65535); s.sendto(b, a)
    s.listen(1); print("listening", flush=True)
    c, _ = s.accept(); n = 0
    while True:
        b = c.recv(1 << 20)
        if not b: break
        n += len(b)
    c.sendall(str(n).encode()); c.close()
else:
    addr, port, k, size, count = sys.argv[3], int(sys.argv[4]), sys.argv[5], int(sys.argv[6]), int(sys.argv[7])
    s = socket.socket(socket.AF_INET6, kind); ext(s, k); s.settimeout(1 if proto == "udp" else 5); s.connect((addr, port))
    if proto == "udp":
        got = 0
        for i in range(count):
            b = bytes((i + j) & 255 for j in range(size)); s.send(b)
            try:
                if s.recv(65535) == b: got += 1
            except socket.timeout: pass
        print(got, flush=True)
    else:
        s.settimeout(30); chunk = bytes(j & 255 for j in range(1 << 16)); n = 0
        while n < size:
            b = chunk[: min(len(chunk), size - n)]; s.sendall(b); n += len(b)
        s.shutdown(socket.SHUT_WR); print(s.recv(64).decode(), flush=True)
`;

let nextPort = 7100;

async function serve<T>(
  lab: Lab,
  toNs: string,
  proto: "udp" | "tcp",
  ext: ExtHeader,
  fn: (port: number) => Promise<T>,
) {
  const port = nextPort++;
  const server = lab.spawn(toNs, `ext-${proto}-${port}`, [
    "python3",
    "-c",
    SCRIPT,
    "server",
    proto,
    String(port),
    ext,
  ]);
  try {
    await until(
      async () => (await lab.log(server)).includes("listening"),
      `${proto} server in ${toNs}`,
      10_000,
    );
    return await fn(port);
  } finally {
    await lab.stop(server, "SIGKILL");
  }
}

/** How many of `count` UDP datagrams of `size` bytes to `toIp6` came back echoed, each way carrying `ext`. */
export function udpEcho6(
  lab: Lab,
  fromNs: string,
  toNs: string,
  toIp6: string,
  o: { ext: ExtHeader; size: number; count: number },
): Promise<number> {
  return serve(lab, toNs, "udp", o.ext, async (port) => {
    const r = await lab.exec(fromNs, [
      "python3",
      "-c",
      SCRIPT,
      "client",
      "udp",
      toIp6,
      String(port),
      o.ext,
      String(o.size),
      String(o.count),
    ]);
    return Number(r.stdout.trim()) || 0;
  });
}

/** Sends `bytes` over one TCP connection to `toIp6` with `ext` on every packet; the bytes the server counted. */
export function tcpSend6(
  lab: Lab,
  fromNs: string,
  toNs: string,
  toIp6: string,
  ext: ExtHeader,
  bytes: number,
) {
  return serve(lab, toNs, "tcp", ext, async (port) => {
    const r = await lab.exec(fromNs, [
      "timeout",
      "60",
      "python3",
      "-c",
      SCRIPT,
      "client",
      "tcp",
      toIp6,
      String(port),
      ext,
      String(bytes),
      "1",
    ]);
    return Number(r.stdout.trim()) || 0;
  });
}
