/**
 * An exact TCP bulk transfer for tests (iperf3 stops counting when the sender finishes):
 *   bun bulk.ts server PORT [HOST]     accepts one connection, counts bytes to EOF, replies "N\n"
 *                                      (HOST: the address to listen on, 0.0.0.0 unless given; :: for IPv6)
 *   bun bulk.ts client IP PORT BYTES   sends BYTES, half-closes, prints the count the server saw
 */
import net from "node:net";

const [mode, a, b, c] = process.argv.slice(2);
if (mode === "server") {
  const srv = net.createServer((s) => {
    let n = 0;
    s.on("data", (d) => {
      n += d.length;
    });
    s.on("end", () => {
      s.end(`${n}\n`);
      srv.close();
    });
  });
  srv.listen(Number(a), b ?? "0.0.0.0", () => console.log("listening"));
} else if (mode === "client") {
  const total = Number(c);
  const s = net.connect(Number(b), a!);
  const chunk = Buffer.alloc(1 << 16, 0x5a);
  let left = total;
  const pump = () => {
    while (left > 0) {
      const n = Math.min(left, chunk.length);
      left -= n;
      if (!s.write(chunk.subarray(0, n))) {
        s.once("drain", pump);
        return;
      }
    }
    s.end();
  };
  let reply = "";
  s.on("connect", pump);
  s.on("data", (d) => {
    reply += d;
  });
  s.on("error", (e) => {
    console.error(e.message);
    process.exit(1);
  });
  s.on("close", () => {
    console.log(reply.trim());
    process.exit(reply.trim() === String(total) ? 0 : 1);
  });
} else {
  console.error("usage: bulk.ts server PORT [HOST] | client IP PORT BYTES");
  process.exit(2);
}
