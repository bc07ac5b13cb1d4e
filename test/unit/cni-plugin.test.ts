/**
 * runCni end to end without root: a fake delegate plugin (a shell script in CNI_PATH
 * that records what it was given) and a stubbed host network. Covers the error objects
 * and their codes, state kept for DEL across invocations, the endpoint hook, and the
 * stale-bridge repair.
 */
import { afterAll, beforeEach, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Endpoint, EndpointSink } from "../../src/backend/endpoint.ts";
import type { BridgeAddr } from "../../src/cni/delegate-conf.ts";
import type { HostNet } from "../../src/cni/host.ts";
import { type CniOptions, runCni } from "../../src/cni/plugin.ts";

const dir = mkdtempSync(join(tmpdir(), "tartan-cni-unit-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const binDir = join(dir, "bin");
const recDir = join(dir, "rec");
const subnetFile = join(dir, "subnet.env");
const dataDir = join(dir, "data");
mkdirSync(binDir);

/** The fake bridge: records stdin per command; FAKE_MODE picks what it answers. */
writeFileSync(
  join(binDir, "bridge"),
  `#!/bin/sh
mkdir -p "${recDir}"
cat > "${recDir}/$CNI_COMMAND.json"
case "$FAKE_MODE" in
  cni-error) echo '{"cniVersion":"1.0.0","code":11,"msg":"bridge is busy"}'; exit 1 ;;
  crash) echo 'panic: oops' >&2; exit 2 ;;
  garbage) echo 'not json'; exit 0 ;;
  dual) [ "$CNI_COMMAND" = ADD ] && echo '{"cniVersion":"1.0.0","interfaces":[{"name":"cni0","mac":"aa:aa:aa:aa:aa:01"},{"name":"vethfake","mac":"aa:aa:aa:aa:aa:02"},{"name":"'"$CNI_IFNAME"'","mac":"AA:AA:AA:AA:AA:03","sandbox":"'"$CNI_NETNS"'"}],"ips":[{"address":"198.19.7.2/24","gateway":"198.19.7.1","interface":2},{"address":"fd00:19:0:7::2/64","gateway":"fd00:19:0:7::1","interface":2}],"routes":[{"dst":"198.19.0.0/16"},{"dst":"fd00:19::/56"}],"dns":{}}'; exit 0 ;;
esac
if [ "$CNI_COMMAND" = ADD ]; then
  echo '{"cniVersion":"0.4.0","interfaces":[{"name":"cni0","mac":"aa:aa:aa:aa:aa:01"},{"name":"vethfake","mac":"aa:aa:aa:aa:aa:02"},{"name":"'"$CNI_IFNAME"'","mac":"AA:AA:AA:AA:AA:03","sandbox":"'"$CNI_NETNS"'"}],"ips":[{"version":"4","address":"198.19.7.2/24","gateway":"198.19.7.1","interface":2}],"routes":[{"dst":"198.19.0.0/16"}],"dns":{}}'
fi
`,
);
chmodSync(join(binDir, "bridge"), 0o755);

const SUBNET_ENV =
  "FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.7.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";

interface Run {
  code: number;
  out: string;
  json: Record<string, unknown>;
  logs: string;
}

class StubHost implements HostNet {
  addrs: BridgeAddr[] | null = null;
  deleted: BridgeAddr[] = [];
  async bridgeAddrs() {
    return this.addrs;
  }
  async delAddr(_dev: string, a: BridgeAddr) {
    this.deleted.push(a);
    this.addrs = (this.addrs ?? []).filter((x) => x !== a);
  }
  async ifindex(dev: string) {
    return dev === "vethfake" ? 42 : null;
  }
}

class RecordingSink implements EndpointSink {
  added: Endpoint[] = [];
  removed: Array<string | [string, string]> = [];
  fail = false;
  async add(ep: Endpoint) {
    if (this.fail) throw new Error("map is full");
    this.added.push(ep);
  }
  async remove(ip: string, ip6?: string) {
    this.removed.push(ip6 === undefined ? ip : [ip, ip6]);
  }
}

let host: StubHost;
let sink: RecordingSink;

async function cni(
  command: string,
  conf: Record<string, unknown> | string,
  extraEnv: Record<string, string | undefined> = {},
  opts: Partial<CniOptions> = {},
): Promise<Run> {
  let out = "";
  let logs = "";
  const code = await runCni({
    env: {
      PATH: process.env.PATH,
      CNI_COMMAND: command,
      CNI_CONTAINERID: "c0ffee",
      CNI_NETNS: "/run/netns/pod",
      CNI_IFNAME: "eth0",
      CNI_PATH: `/nonexistent:${binDir}`,
      ...extraEnv,
    },
    stdin: typeof conf === "string" ? conf : JSON.stringify(conf),
    stdout: (s) => {
      out += s;
    },
    stderr: (s) => {
      logs += s;
    },
    host,
    endpointSink: sink,
    ...opts,
  });
  let json: Record<string, unknown> = {};
  try {
    json = out ? (JSON.parse(out) as Record<string, unknown>) : {};
  } catch {}
  return { code, out, json, logs };
}

const CONF = { cniVersion: "1.0.0", name: "cbr0", type: "tartan", subnetFile, dataDir };
const recorded = (cmd: string) => JSON.parse(readFileSync(join(recDir, `${cmd}.json`), "utf8"));

beforeEach(() => {
  host = new StubHost();
  sink = new RecordingSink();
  writeFileSync(subnetFile, SUBNET_ENV);
  rmSync(recDir, { recursive: true, force: true });
  rmSync(dataDir, { recursive: true, force: true });
});

describe("runCni", () => {
  test("VERSION", async () => {
    const r = await cni(
      "VERSION",
      { cniVersion: "0.3.1" },
      { CNI_CONTAINERID: undefined, CNI_PATH: undefined },
    );
    expect(r.code).toBe(0);
    expect(r.json).toEqual({ cniVersion: "0.3.1", supportedVersions: ["0.3.0", "0.3.1", "0.4.0", "1.0.0"] });
    expect((await cni("VERSION", "")).json.cniVersion).toBe("1.0.0");
  });

  test("ADD delegates to bridge, answers in the config's version, stores the config, reports the endpoint", async () => {
    const r = await cni("ADD", CONF);
    expect(r.code).toBe(0);
    expect(r.json.cniVersion).toBe("1.0.0");
    expect(r.json.ips).toEqual([{ address: "198.19.7.2/24", gateway: "198.19.7.1", interface: 2 }]);
    const delegated = recorded("ADD");
    expect(delegated).toEqual({
      name: "cbr0",
      type: "bridge",
      ipMasq: false,
      mtu: 1450,
      isGateway: true,
      cniVersion: "1.0.0",
      ipam: {
        type: "host-local",
        ranges: [[{ subnet: "198.19.7.0/24" }]],
        routes: [{ dst: "198.19.0.0/16" }],
      },
    });
    // stored exactly as flannel's plugin stores it: <dataDir>/<containerId>
    expect(JSON.parse(readFileSync(join(dataDir, "c0ffee"), "utf8"))).toEqual(delegated);
    expect(sink.added).toEqual([
      {
        ip: "198.19.7.2",
        ifindex: 42,
        hostVeth: "vethfake",
        mac: "aa:aa:aa:aa:aa:03",
        hostMac: "aa:aa:aa:aa:aa:02",
        containerId: "c0ffee",
        ifname: "eth0",
        netns: "/run/netns/pod",
        bridge: "cni0",
      },
    ]);
  });

  test("dual stack: ADD reports the pod's IPv6 address with its IPv4 one; DEL withdraws both", async () => {
    const r = await cni("ADD", CONF, { FAKE_MODE: "dual" });
    expect(r.code).toBe(0);
    expect(sink.added.map((e) => [e.ip, e.ip6])).toEqual([["198.19.7.2", "fd00:19:0:7::2"]]);
    expect(r.logs).toContain("ip6=fd00:19:0:7::2");
    expect((await cni("DEL", CONF, { FAKE_MODE: "dual" })).code).toBe(0);
    expect(sink.removed).toEqual([["198.19.7.2", "fd00:19:0:7::2"]]);
  });

  test("ADD still succeeds when the endpoint sink fails, and says so", async () => {
    sink.fail = true;
    const r = await cni("ADD", CONF);
    expect(r.code).toBe(0);
    expect(r.json.ips).toBeDefined();
    expect(r.logs).toContain("the datapath was not told about it");
    expect(r.logs).toContain("map is full");
  });

  test("DEL after a restart uses the stored config, withdraws the endpoint, removes the state; twice is fine", async () => {
    expect((await cni("ADD", CONF)).code).toBe(0);
    const stored = recorded("ADD");
    // the node's subnet.env is gone (agent restarting) and the config names another subnet file
    rmSync(subnetFile);
    const r = await cni("DEL", { ...CONF, subnetFile: join(dir, "other.env") }, { CNI_NETNS: "" });
    expect(r.code).toBe(0);
    expect(r.out).toBe("");
    expect(recorded("DEL")).toEqual(stored);
    expect(sink.removed).toEqual(["198.19.7.2"]);
    expect(existsSync(join(dataDir, "c0ffee"))).toBe(false);
    expect(existsSync(join(dataDir, "tartan-endpoints", "c0ffee"))).toBe(false);
    rmSync(recDir, { recursive: true, force: true });
    const again = await cni("DEL", CONF);
    expect(again.code).toBe(0);
    expect(existsSync(join(recDir, "DEL.json"))).toBe(false);
  });

  test("DEL without state still asks the delegate to release, when subnet.env is there", async () => {
    const r = await cni("DEL", CONF);
    expect(r.code).toBe(0);
    expect(recorded("DEL").ipam.ranges).toEqual([[{ subnet: "198.19.7.0/24" }]]);
  });

  test("CHECK: passes prevResult (with the gateways the bridge used) to the delegate", async () => {
    const add = await cni("ADD", CONF);
    const r = await cni("CHECK", { ...CONF, prevResult: add.json });
    expect(r.code).toBe(0);
    const sent = recorded("CHECK");
    expect(sent.prevResult.routes).toEqual([{ dst: "198.19.0.0/16", gw: "198.19.7.1" }]);
    expect(sent.ipam.ranges).toEqual([[{ subnet: "198.19.7.0/24" }]]);
  });

  test("CHECK: unknown container is code 3, a 0.3.1 config is code 1, no prevResult is code 7", async () => {
    expect((await cni("CHECK", { ...CONF, prevResult: {} })).json.code).toBe(3);
    expect((await cni("CHECK", { ...CONF, cniVersion: "0.3.1" })).json.code).toBe(1);
    await cni("ADD", CONF);
    expect((await cni("CHECK", CONF)).json.code).toBe(7);
  });

  test("errors are the spec's object, in the config's version, with exit 1", async () => {
    const cases: [string, Record<string, unknown> | string, Record<string, string | undefined>, number][] = [
      ["ADD", "{not json", {}, 6],
      ["ADD", { ...CONF, cniVersion: "0.1.0" }, {}, 1],
      ["ADD", { ...CONF, name: 5 }, {}, 7],
      ["ADD", CONF, { CNI_IFNAME: undefined }, 4],
      ["FROB", CONF, {}, 4],
      ["ADD", CONF, { CNI_PATH: "/nonexistent" }, 100],
    ];
    for (const [cmd, conf, env, code] of cases) {
      const r = await cni(cmd, conf, env);
      expect(r.code).toBe(1);
      const keys = Object.keys(r.json).filter((k) => k !== "details");
      expect(keys.sort()).toEqual(["cniVersion", "code", "msg"]);
      expect(["string", "undefined"]).toContain(typeof r.json.details);
      expect(r.json.code).toBe(code);
      expect(typeof r.json.msg).toBe("string");
      expect(r.out.endsWith("}\n")).toBe(true);
    }
    const v04 = await cni("ADD", { ...CONF, cniVersion: "0.4.0", name: 5 });
    expect(v04.json.cniVersion).toBe("0.4.0");
  });

  test("missing subnet.env is 'try again later' (11); a corrupt one is 101", async () => {
    rmSync(subnetFile);
    const missing = await cni("ADD", CONF);
    expect(missing.json.code).toBe(11);
    expect(missing.json.msg).toContain(`${subnetFile} does not exist yet`);
    writeFileSync(subnetFile, "FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=banana\n");
    const bad = await cni("ADD", CONF);
    expect(bad.json.code).toBe(101);
    expect(bad.json.msg).toContain("FLANNEL_SUBNET=banana");
    expect(existsSync(join(recDir, "ADD.json"))).toBe(false);
  });

  test("a delegate's CNI error keeps its code; a crash is 102 with its stderr", async () => {
    const e = await cni("ADD", CONF, { FAKE_MODE: "cni-error" });
    expect(e.json).toEqual({ cniVersion: "1.0.0", code: 11, msg: "bridge ADD: bridge is busy" });
    const c = await cni("ADD", CONF, { FAKE_MODE: "crash" });
    expect(c.json).toEqual({
      cniVersion: "1.0.0",
      code: 102,
      msg: "bridge ADD exited 2",
      details: "panic: oops",
    });
    const g = await cni("ADD", CONF, { FAKE_MODE: "garbage" });
    expect(g.json.code).toBe(102);
    // the config stays stored so the runtime's DEL can undo a half-done ADD
    expect(existsSync(join(dataDir, "c0ffee"))).toBe(true);
  });

  test("a bridge left with an older subnet's address is repaired, with a log line", async () => {
    const old = { ip: "198.19.3.1", len: 24 };
    host.addrs = [old];
    const r = await cni("ADD", CONF);
    expect(r.code).toBe(0);
    expect(host.deleted).toEqual([old]);
    expect(r.logs).toContain('msg="removed a stale address from the bridge: the node\'s subnet changed"');
    expect(r.logs).toContain("stale=198.19.3.1/24");
    host.addrs = [{ ip: "198.19.7.1", len: 24 }];
    host.deleted = [];
    expect((await cni("ADD", CONF)).code).toBe(0);
    expect(host.deleted).toEqual([]);
  });

  test("an endpoint sink factory gets the network config", async () => {
    let seen: Readonly<Record<string, unknown>> | null = null;
    const r = await cni(
      "ADD",
      { ...CONF, ebpf: { pin: "/sys/fs/bpf/x" } },
      {},
      {
        endpointSink: ({ conf }) => {
          seen = conf;
          return sink;
        },
      },
    );
    expect(r.code).toBe(0);
    expect(seen).toMatchObject({ ebpf: { pin: "/sys/fs/bpf/x" } });
    expect(sink.added).toHaveLength(1);
  });
});
