/**
 * A TCP proxy on loopback that a test can cut and restore: a network partition
 * between one client and a server that stays up (so the test can still write to the
 * server directly while the client is cut off).
 */
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { freePort } from "./etcd.ts";

export interface TcpProxy {
  /** "127.0.0.1:PORT" */
  readonly address: string;
  readonly port: number;
  /** Drops every connection and refuses new ones. */
  cut(): Promise<void>;
  /** Accepts connections again, on the same port. */
  restore(): Promise<void>;
  close(): Promise<void>;
}

export async function startTcpProxy(
  targetHost: string,
  targetPort: number,
  host = "127.0.0.1",
): Promise<TcpProxy> {
  const port = await freePort(host);
  const sockets = new Set<Socket>();
  let server: Server | null = null;

  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const srv = createServer((client) => {
        const upstream = createConnection({ host: targetHost, port: targetPort });
        sockets.add(client);
        sockets.add(upstream);
        const drop = () => {
          client.destroy();
          upstream.destroy();
          sockets.delete(client);
          sockets.delete(upstream);
        };
        client.on("error", drop).on("close", drop);
        upstream.on("error", drop).on("close", drop);
        client.pipe(upstream);
        upstream.pipe(client);
      });
      srv.once("error", reject);
      srv.listen(port, host, () => resolve());
      server = srv;
    });

  const cut = async () => {
    const srv = server;
    server = null;
    for (const s of sockets) s.destroy();
    sockets.clear();
    if (srv) await new Promise<void>((resolve) => srv.close(() => resolve()));
  };

  await listen();
  return {
    address: `${host}:${port}`,
    port,
    cut,
    restore: async () => {
      if (!server) await listen();
    },
    close: cut,
  };
}
