/** CNI plugin inputs: CNI_* environment, stdin network config, version negotiation. */
import { describe, expect, test } from "bun:test";
import { DEFAULT_DATA_DIR, parseCniEnv, parseNetConf } from "../../src/cni/conf.ts";
import { buildDelegateConf, staleBridgeAddrs } from "../../src/cni/delegate-conf.ts";
import { CNI_ERR, CniError } from "../../src/cni/errors.ts";
import { compareVersions, negotiate, requireCheckSupport, versionInfo } from "../../src/cni/version.ts";
import { parseCidr } from "../../src/config/cidr.ts";
import { DEFAULT_SUBNET_FILE } from "../../src/config/options.ts";

const ENV = {
  CNI_COMMAND: "ADD",
  CNI_CONTAINERID: "abc123",
  CNI_NETNS: "/var/run/netns/pod",
  CNI_IFNAME: "eth0",
  CNI_PATH: "/opt/cni/bin:/usr/lib/cni",
};

function codeOf(fn: () => unknown): { code: number; msg: string } {
  try {
    fn();
  } catch (e) {
    if (e instanceof CniError) return { code: e.code, msg: e.message };
    throw e;
  }
  throw new Error("did not throw");
}

describe("CNI environment", () => {
  test("ADD with every variable", () => {
    expect(parseCniEnv(ENV)).toEqual({
      command: "ADD",
      containerId: "abc123",
      netns: "/var/run/netns/pod",
      ifname: "eth0",
      args: "",
      path: ["/opt/cni/bin", "/usr/lib/cni"],
    });
  });

  test("missing or unknown CNI_COMMAND is code 4", () => {
    expect(codeOf(() => parseCniEnv({ ...ENV, CNI_COMMAND: undefined }))).toEqual({
      code: CNI_ERR.INVALID_ENV,
      msg: "CNI_COMMAND is not set",
    });
    const r = codeOf(() => parseCniEnv({ ...ENV, CNI_COMMAND: "GC2" }));
    expect(r.code).toBe(4);
    expect(r.msg).toBe('unknown CNI_COMMAND: "GC2" (supported: ADD, DEL, CHECK, VERSION)');
  });

  test("each required variable is named when missing", () => {
    for (const name of ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]) {
      const r = codeOf(() => parseCniEnv({ ...ENV, [name]: undefined }));
      expect(r).toEqual({ code: 4, msg: `${name} is required for ADD` });
    }
  });

  test("DEL does not need CNI_NETNS; VERSION needs nothing but the command", () => {
    expect(parseCniEnv({ ...ENV, CNI_COMMAND: "DEL", CNI_NETNS: undefined }).netns).toBe("");
    expect(parseCniEnv({ CNI_COMMAND: "VERSION" }).command).toBe("VERSION");
    expect(codeOf(() => parseCniEnv({ ...ENV, CNI_COMMAND: "CHECK", CNI_NETNS: "" })).code).toBe(4);
  });

  test("a container id that is not a safe file name is refused", () => {
    const r = codeOf(() => parseCniEnv({ ...ENV, CNI_CONTAINERID: "../../etc/passwd" }));
    expect(r.code).toBe(4);
    expect(r.msg).toContain("CNI_CONTAINERID");
  });
});

describe("network config on stdin", () => {
  const base = { cniVersion: "1.0.0", name: "cbr0", type: "tartan" };

  test("defaults are flannel's", () => {
    const c = parseNetConf(JSON.stringify(base));
    expect(c.subnetFile).toBe(DEFAULT_SUBNET_FILE);
    expect(c.dataDir).toBe(DEFAULT_DATA_DIR);
    expect(c.subnetFile).toBe("/run/flannel/subnet.env");
    expect(c.dataDir).toBe("/var/lib/cni/flannel");
  });

  test("not JSON, or not an object: code 6", () => {
    expect(codeOf(() => parseNetConf("{nope")).code).toBe(CNI_ERR.DECODE_FAILURE);
    expect(codeOf(() => parseNetConf("[1,2]")).code).toBe(6);
    expect(codeOf(() => parseNetConf("")).code).toBe(6);
  });

  test("unsupported or missing cniVersion: code 1, naming what is supported", () => {
    const r = codeOf(() => parseNetConf(JSON.stringify({ ...base, cniVersion: "0.2.0" })));
    expect(r.code).toBe(CNI_ERR.INCOMPATIBLE_VERSION);
    expect(r.msg).toBe(
      'incompatible CNI versions: config cniVersion is "0.2.0", plugin supports 0.3.0, 0.3.1, 0.4.0, 1.0.0',
    );
    expect(codeOf(() => parseNetConf(JSON.stringify({ name: "x", type: "tartan" }))).code).toBe(1);
  });

  test("invalid fields: code 7 naming the field", () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ ...base, name: "" }, "name"],
      [{ ...base, subnetFile: "relative/subnet.env" }, "subnetFile must be an absolute path"],
      [{ ...base, dataDir: 42 }, "dataDir"],
      [{ ...base, delegate: { name: "x" } }, "delegate must not have a name field"],
      [{ ...base, delegate: { ipam: {} } }, "delegate must not have an ipam field"],
      [{ ...base, delegate: { type: 7 } }, "delegate.type must be a plugin name"],
      [{ ...base, ipam: { routes: [{ dst: "banana" }] } }, "ipam.routes.0.dst"],
    ];
    for (const [conf, want] of cases) {
      const r = codeOf(() => parseNetConf(JSON.stringify(conf)));
      expect(r.code).toBe(CNI_ERR.INVALID_CONFIG);
      expect(r.msg).toContain(want);
    }
  });
});

describe("version negotiation", () => {
  test("supported versions pass, others are code 1", () => {
    for (const v of ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]) expect(negotiate(v)).toBe(v as never);
    for (const v of ["0.1.0", "0.2.0", "1.1.0", "", 1]) expect(codeOf(() => negotiate(v)).code).toBe(1);
  });

  test("CHECK needs 0.4.0 or later", () => {
    expect(codeOf(() => requireCheckSupport("0.3.1")).code).toBe(1);
    expect(() => requireCheckSupport("0.4.0")).not.toThrow();
    expect(() => requireCheckSupport("1.0.0")).not.toThrow();
  });

  test("VERSION answers in the config's version when it is supported", () => {
    expect(versionInfo("0.4.0")).toEqual({
      cniVersion: "0.4.0",
      supportedVersions: ["0.3.0", "0.3.1", "0.4.0", "1.0.0"],
    });
    expect(versionInfo("9.9.9").cniVersion).toBe("1.0.0");
    expect(versionInfo(undefined).cniVersion).toBe("1.0.0");
  });

  test("versions compare numerically", () => {
    expect(compareVersions("0.10.0", "0.4.0")).toBe(1);
    expect(compareVersions("1.0.0", "1.0")).toBe(0);
    expect(compareVersions("0.3.1", "0.4.0")).toBe(-1);
  });
});

describe("delegate config (flannel's rules)", () => {
  const env = {
    network: parseCidr("198.19.0.0/16")!,
    subnet: parseCidr("198.19.7.0/24")!,
    mtu: 1450,
    ipMasq: true,
  };
  const conf = (extra: Record<string, unknown> = {}) =>
    parseNetConf(JSON.stringify({ cniVersion: "0.4.0", name: "cbr0", type: "tartan", ...extra }));

  test("bridge, isGateway, mtu, ipMasq = !FLANNEL_IPMASQ, host-local over the subnet, route to the network", () => {
    expect(buildDelegateConf(conf(), env)).toEqual({
      name: "cbr0",
      type: "bridge",
      ipMasq: false,
      mtu: 1450,
      isGateway: true,
      cniVersion: "0.4.0",
      ipam: {
        type: "host-local",
        ranges: [[{ subnet: "198.19.7.0/24" }]],
        routes: [{ dst: "198.19.0.0/16" }],
      },
    });
    expect(buildDelegateConf(conf(), { ...env, ipMasq: false }).ipMasq).toBe(true);
  });

  test("the user's delegate keys and ipam extras win; runtimeConfig is passed on", () => {
    const d = buildDelegateConf(
      conf({
        delegate: { bridge: "br9", mtu: 1400, ipMasq: true, isGateway: false, hairpinMode: true },
        ipam: { dataDir: "/tmp/x", routes: [{ dst: "198.18.0.0/16" }] },
        runtimeConfig: { portMappings: [] },
      }),
      env,
    );
    expect(d).toMatchObject({
      bridge: "br9",
      mtu: 1400,
      ipMasq: true,
      isGateway: false,
      hairpinMode: true,
      runtimeConfig: { portMappings: [] },
    });
    expect(d.ipam).toEqual({
      dataDir: "/tmp/x",
      type: "host-local",
      ranges: [[{ subnet: "198.19.7.0/24" }]],
      routes: [{ dst: "198.18.0.0/16" }, { dst: "198.19.0.0/16" }],
    });
  });

  test("another delegate type gets no isGateway", () => {
    const d = buildDelegateConf(conf({ delegate: { type: "ipvlan", master: "eth0" } }), env);
    expect(d.type).toBe("ipvlan");
    expect("isGateway" in d).toBe(false);
  });

  test("stale bridge addresses: everything but exactly the gateway/len", () => {
    const gw = { ip: "198.19.7.1", len: 24 };
    expect(staleBridgeAddrs([gw], gw)).toEqual([]);
    expect(staleBridgeAddrs([{ ip: "198.19.3.1", len: 24 }, { ip: "198.19.7.1", len: 16 }, gw], gw)).toEqual([
      { ip: "198.19.3.1", len: 24 },
      { ip: "198.19.7.1", len: 16 },
    ]);
  });
});
