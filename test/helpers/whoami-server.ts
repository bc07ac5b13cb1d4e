/** A tiny TCP server for tests: answers every connection with the peer's address and closes. Args: PORT [HOST] (:: for IPv6). */
const port = Number(process.argv[2] ?? 7000);
Bun.listen({
  hostname: process.argv[3] ?? "0.0.0.0",
  port,
  socket: {
    open(s) {
      s.write(`${s.remoteAddress}\n`);
      s.end();
    },
    data() {},
  },
});
console.log(`listening on ${port}`);
