/**
 * The etcd gateway client against a stand-in HTTP server (no etcd, no root): the next
 * endpoint when one cannot be reached, has no leader, or holds a lease write past its
 * deadline (and the next watch elsewhere when a member ended the last one), etcd's errors with their gRPC codes, a token etcd
 * no longer accepts replaced once, watch responses split across chunks; and when the
 * gRPC fallback is taken (only with a client certificate, only for the gateway's own
 * "unavailable").
 */
import { afterEach, describe, expect, test } from "bun:test";
import { EtcdCallError, EtcdGateway, type WatchResponse } from "../../src/registry/etcd-gateway.ts";
import { gatewayCannotReachGrpc } from "../../src/registry/etcd-grpc.ts";
import { freePort } from "../helpers/etcd.ts";

const servers: { stop(force?: boolean): unknown }[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.stop(true);
});

function serve(
  handler: (req: Request, body: Record<string, unknown>) => Response | Promise<Response>,
  port = 0,
) {
  const seen: { path: string; auth: string | null; body: Record<string, unknown> }[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port,
    async fetch(req) {
      const body = (await req.json()) as Record<string, unknown>;
      seen.push({ path: new URL(req.url).pathname, auth: req.headers.get("authorization"), body });
      return handler(req, body);
    },
  });
  servers.push(server);
  return { url: `http://127.0.0.1:${server.port}`, seen };
}

describe("etcd gateway client", () => {
  test("a call goes to the next endpoint when one cannot be reached, and stays there", async () => {
    const port = await freePort();
    const up = serve(() => Response.json({ header: { revision: "7" }, kvs: [] }));
    const etcd = new EtcdGateway({ endpoints: [`http://127.0.0.1:${port}`, up.url] });
    expect(await etcd.call("/v3/kv/range", { key: "eA==" })).toEqual({ header: { revision: "7" }, kvs: [] });
    // the first endpoint answers again: the client keeps using the one that answered
    const back = serve(() => Response.json({ header: { revision: "1" } }), port);
    await etcd.call("/v3/kv/range", { key: "eA==" });
    expect(up.seen.map((s) => s.path)).toEqual(["/v3/kv/range", "/v3/kv/range"]);
    expect(back.seen).toEqual([]);
  });

  test("no endpoint reachable: an error that says so", async () => {
    const etcd = new EtcdGateway({ endpoints: [`http://127.0.0.1:${await freePort()}`] });
    const e = (await etcd.call("/v3/kv/range", {}).catch((x) => x)) as EtcdCallError;
    expect(e).toBeInstanceOf(EtcdCallError);
    expect(e.message).toStartWith("cannot reach etcd: ");
    expect(e.code).toBeNull();
  });

  test("etcd's errors carry its message and gRPC code", async () => {
    const s = serve(() =>
      Response.json(
        { error: "etcdserver: permission denied", message: "etcdserver: permission denied", code: 7 },
        { status: 403 },
      ),
    );
    const e = (await new EtcdGateway({ endpoints: [s.url] })
      .call("/v3/kv/put", {})
      .catch((x) => x)) as EtcdCallError;
    expect(e).toBeInstanceOf(EtcdCallError);
    expect([e.message, e.code]).toEqual(["etcdserver: permission denied", 7]);
  });

  test("authenticates once, sends the token, and replaces a token etcd no longer accepts", async () => {
    let issued = 0;
    let valid = "";
    const s = serve((req, body) => {
      if (new URL(req.url).pathname === "/v3/auth/authenticate") {
        if (body.name !== "flannel" || body.password !== "pw")
          return Response.json({ error: "etcdserver: authentication failed", code: 3 }, { status: 400 });
        valid = `token-${++issued}`;
        return Response.json({ token: valid });
      }
      if (req.headers.get("authorization") !== valid)
        return Response.json({ error: "etcdserver: invalid auth token", code: 16 }, { status: 401 });
      return Response.json({ header: { revision: "1" } });
    });
    const etcd = new EtcdGateway({ endpoints: [s.url], auth: { username: "flannel", password: "pw" } });
    await etcd.call("/v3/kv/range", {});
    await etcd.call("/v3/kv/range", {});
    expect(issued).toBe(1);
    valid = "expired"; // etcd restarted: our token is unknown now
    await etcd.call("/v3/kv/range", {});
    expect(issued).toBe(2);
    expect(s.seen.filter((x) => x.path === "/v3/kv/range").map((x) => x.auth)).toEqual([
      "token-1",
      "token-1",
      "token-1",
      "token-2",
    ]);
  });

  test("watch: one response per line, however the lines are cut into chunks; an error line ends it", async () => {
    const lines = [
      JSON.stringify({ result: { header: { revision: "5" }, created: true } }),
      JSON.stringify({
        result: { header: { revision: "6" }, events: [{ kv: { key: "YQ==", mod_revision: "6" } }] },
      }),
      JSON.stringify({
        result: { header: { revision: "7" }, events: [{ type: "DELETE", kv: { key: "YQ==" } }] },
      }),
      JSON.stringify({
        error: { message: "etcdserver: mvcc: required revision has been compacted", code: 11 },
      }),
    ];
    const text = `${lines.join("\n")}\n`;
    // cut in the middle of the second line, and two lines in one chunk
    const cuts = [text.indexOf("events") + 3, text.lastIndexOf("{")];
    const chunks = [text.slice(0, cuts[0]), text.slice(cuts[0], cuts[1]), text.slice(cuts[1])];
    const s = serve(
      () =>
        new Response(
          new ReadableStream({
            async start(c) {
              for (const ch of chunks) {
                c.enqueue(new TextEncoder().encode(ch));
                await Bun.sleep(5);
              }
              c.close();
            },
          }),
        ),
    );
    const w = await new EtcdGateway({ endpoints: [s.url] }).watch({ key: "YQ==", start_revision: 6 });
    const got: WatchResponse[] = [];
    const err = await (async () => {
      for await (const r of w.responses) got.push(r);
    })().catch((e) => e);
    expect(got.map((r) => [r.header?.revision, r.created ?? false, r.events?.[0]?.type ?? null])).toEqual([
      ["5", true, null],
      ["6", false, null],
      ["7", false, "DELETE"],
    ]);
    expect(err).toBeInstanceOf(EtcdCallError);
    expect(err.code).toBe(11);
    expect(s.seen[0]!.body).toEqual({ create_request: { key: "YQ==", start_revision: 6 } });
  });
});

describe("etcd gateway client on a cluster of members", () => {
  const noLeader = () =>
    Response.json(
      { error: "etcdserver: no leader", message: "etcdserver: no leader", code: 14 },
      { status: 503 },
    );
  const ok = () => Response.json({ header: { revision: "3" } });

  test("every call and watch asks for a member with a leader (a header the gateway passes on as metadata)", async () => {
    const heard: (string | null)[] = [];
    const s = serve((req) => {
      heard.push(req.headers.get("grpc-metadata-hasleader"));
      return new URL(req.url).pathname === "/v3/watch"
        ? new Response(`${JSON.stringify({ result: { created: true } })}\n`)
        : ok();
    });
    const etcd = new EtcdGateway({ endpoints: [s.url] });
    await etcd.call("/v3/kv/range", {});
    const w = await etcd.watch({ key: "YQ==" });
    w.cancel();
    expect(heard).toEqual(["true", "true"]);
  });

  test("a member without a leader is left for the next; the one that answered is asked first from then on", async () => {
    const a = serve(noLeader);
    const b = serve(ok);
    const etcd = new EtcdGateway({ endpoints: [a.url, b.url] });
    expect(await etcd.call("/v3/kv/range", {})).toEqual({ header: { revision: "3" } });
    await etcd.call("/v3/kv/range", {});
    expect([a.seen.length, b.seen.length]).toEqual([1, 2]);
  });

  test("an error of the request itself is not retried on another member", async () => {
    const a = serve(() =>
      Response.json(
        { error: "etcdserver: key not found", message: "key not found", code: 3 },
        { status: 400 },
      ),
    );
    const b = serve(ok);
    const e = (await new EtcdGateway({ endpoints: [a.url, b.url] })
      .call("/v3/kv/txn", {})
      .catch((x) => x)) as EtcdCallError;
    expect([e.message, e.code]).toEqual(["key not found", 3]);
    expect(b.seen).toEqual([]);
  });

  test("no member with a leader: etcd's own word, not 'cannot reach'", async () => {
    const etcd = new EtcdGateway({ endpoints: [serve(noLeader).url, serve(noLeader).url] });
    const e = (await etcd.call("/v3/kv/range", {}).catch((x) => x)) as EtcdCallError;
    expect([e.message, e.code]).toEqual(["etcdserver: no leader", 14]);
  });

  test("a lease write's attempt on a member that holds it ends at a sixth of the TTL; the next member takes it", async () => {
    // a member that takes requests and never answers (cut off from the majority, not yet aware)
    const stuck = serve(() => new Promise<Response>(() => {}));
    const b = serve((req) =>
      Response.json(
        new URL(req.url).pathname === "/v3/lease/grant" ? { ID: "42", TTL: "6" } : { succeeded: true },
      ),
    );
    const ttls = new Map([["42", 6000]]);
    // an hour per ordinary request: only the lease write's own deadline can end the stuck attempts
    const etcd = new EtcdGateway({
      endpoints: [stuck.url, b.url],
      requestTimeoutMs: 3_600_000,
      leaseTtlMs: (id) => ttls.get(id),
    });
    expect(await etcd.call("/v3/lease/grant", { TTL: 6, ID: 0 })).toEqual({ ID: "42", TTL: "6" });
    // the stuck member is tried last now; ask it first again, as after its second is over
    const first = new EtcdGateway({
      endpoints: [stuck.url, b.url],
      requestTimeoutMs: 3_600_000,
      leaseTtlMs: (id) => ttls.get(id),
    });
    expect(
      await first.call("/v3/kv/txn", { success: [{ request_put: { key: "YQ==", lease: "42" } }] }),
    ).toEqual({ succeeded: true });
    expect(stuck.seen.map((x) => x.path)).toEqual(["/v3/lease/grant", "/v3/kv/txn"]);
  });

  test("a watch that a member ends sends the next watch to another member; one we cancel does not", async () => {
    const created = () => new Response(`${JSON.stringify({ result: { created: true } })}\n`);
    const a = serve(created);
    const b = serve(created);
    const etcd = new EtcdGateway({ endpoints: [a.url, b.url] });
    const drain = async (w: { responses: AsyncIterable<WatchResponse> }) => {
      for await (const _ of w.responses);
    };
    // ended by the member (as etcd does three election timeouts after losing its leader)
    await drain(await etcd.watch({ key: "YQ==" }));
    await drain(await etcd.watch({ key: "YQ==" }));
    expect([a.seen.length, b.seen.length]).toEqual([1, 1]);
    // a watch stream that stays open until we cancel it
    const held = serve((req) =>
      new URL(req.url).pathname === "/v3/watch"
        ? new Response(
            new ReadableStream({
              start: (c) =>
                c.enqueue(new TextEncoder().encode(`${JSON.stringify({ result: { created: true } })}\n`)),
            }),
          )
        : ok(),
    );
    const etcd2 = new EtcdGateway({ endpoints: [held.url, b.url] });
    const w = await etcd2.watch({ key: "YQ==" });
    const ended = drain(w).catch(() => {});
    w.cancel();
    await ended;
    await etcd2.call("/v3/kv/range", {});
    expect(held.seen.map((x) => x.path)).toEqual(["/v3/watch", "/v3/kv/range"]);
  });
});

describe("gRPC fallback", () => {
  const withCert = { endpoints: ["https://127.0.0.1:1"], tls: { cert: "c", key: "k" } };
  const unavailable = (m: string) => new EtcdCallError(m, 14);
  test("taken only for the gateway's own 'unavailable', and only with a client certificate", () => {
    expect(gatewayCannotReachGrpc(unavailable("connection closed"), withCert)).toBe(true);
    expect(
      gatewayCannotReachGrpc(
        unavailable('connection error: desc = "transport: authentication handshake failed"'),
        withCert,
      ),
    ).toBe(true);
    // etcd itself unavailable (no leader, timeouts) is transient: retried, never a switch
    expect(gatewayCannotReachGrpc(unavailable("etcdserver: no leader"), withCert)).toBe(false);
    expect(gatewayCannotReachGrpc(unavailable("connection closed"), { endpoints: ["http://x:1"] })).toBe(
      false,
    );
    expect(gatewayCannotReachGrpc(new EtcdCallError("cannot reach etcd: refused", null), withCert)).toBe(
      false,
    );
  });
});
