import { describe, expect, test } from "bun:test";
import { normalizeArgv } from "../../src/cli/flags.ts";
import { parseAgentOptions, parseDuration, parseRegistryCommand } from "../../src/cli/options.ts";
import { formatIp4 } from "../../src/config/cidr.ts";
import { formatIp6 } from "../../src/config/cidr6.ts";
import { main } from "../../src/main.ts";

const agent = (argv: string[], env: Record<string, string> = {}) => parseAgentOptions(argv, env);

describe("agent flags", () => {
  test("defaults", () => {
    const o = agent(["--node-name=n1"]);
    expect(o.registry).toEqual({ kind: "sqlite", path: "/var/lib/tartan/registry.db" });
    expect(o.subnetFile).toBe("/run/flannel/subnet.env");
    expect(o.http).toEqual({ host: "127.0.0.1", port: 8471 });
    expect(o.leaseTtlMs).toBe(24 * 3600_000);
    expect(o.renewMarginMs).toBe(60 * 60_000);
    expect(o.bpffs).toBe("/sys/fs/bpf/tartan/n1");
    expect(o.backend).toBeNull();
    expect(o.decap).toBe("auto");
    expect(o.healthz).toBeNull();
    expect(o.ipMasq).toBe(false);
    expect(o.stateDir).toBe("/var/lib/tartan");
    expect(agent(["--etcd-endpoints=http://127.0.0.1:2379"]).stateDir).toBe("/var/lib/tartan");
    expect(agent(["--registry=sqlite:/srv/t/r.db"]).stateDir).toBe("/srv/t");
    expect(agent(["--state-dir=/x"]).stateDir).toBe("/x");
  });
  test("Go-style single-dash flags and repeatable --iface", () => {
    const o = agent([
      "-etcd-endpoints=http://127.0.0.1:2379",
      "-iface=eth0",
      "-iface",
      "198.18.0.1",
      "-ip-masq",
      "-etcd-prefix=/x/",
    ]);
    expect(o.registry).toEqual({ kind: "etcd", endpoints: ["http://127.0.0.1:2379"], prefix: "/x" });
    expect(o.ifaces).toEqual(["eth0", "198.18.0.1"]);
    expect(o.ipMasq).toBe(true);
  });
  test("booleans take =true/=false as Go does", () => {
    expect(agent(["--ip-masq=false"]).ipMasq).toBe(false);
    expect(agent(["-ip-masq=true"]).ipMasq).toBe(true);
  });
  test("FLANNELD_* environment variables, with the command line winning", () => {
    const env = {
      FLANNELD_IFACE: "eth1,eth2",
      FLANNELD_IP_MASQ: "true",
      FLANNELD_SUBNET_FILE: "/tmp/a.env",
      FLANNELD_PUBLIC_IP: "198.18.0.9",
    };
    const o = agent(["--subnet-file=/tmp/b.env"], env);
    expect(o.ifaces).toEqual(["eth1", "eth2"]);
    expect(o.ipMasq).toBe(true);
    expect(o.subnetFile).toBe("/tmp/b.env");
    expect(formatIp4(o.publicIp!)).toBe("198.18.0.9");
    expect(o.fromEnv.sort()).toEqual(["iface", "ip-masq", "public-ip"]);
  });
  test("dual stack: --public-ipv6 and --iface-can-reach take IPv6, as flanneld's", () => {
    const o = agent(["--public-ipv6=fd00:18::7", "--iface-can-reach=fd00:18::1"], {
      FLANNELD_PUBLIC_IP: "198.18.0.7",
    });
    expect(formatIp6(o.publicIpv6!)).toBe("fd00:18::7");
    expect(o.ifaceCanReach).toBeNull();
    expect(formatIp6(o.ifaceCanReach6!)).toBe("fd00:18::1");
    const v4 = agent(["--iface-can-reach=198.18.0.1"]);
    expect(formatIp4(v4.ifaceCanReach!)).toBe("198.18.0.1");
    expect(v4.ifaceCanReach6).toBeNull();
    expect(agent([], { FLANNELD_PUBLIC_IPV6: "fd00:18::9" }).fromEnv).toEqual(["public-ipv6"]);
  });
  test("tartan's own flags", () => {
    const o = agent([
      "--backend=ebpf-vxlan",
      "--registry=sqlite:/tmp/r.db",
      "--http=0.0.0.0:9000",
      "--lease-ttl=1h30m",
      "--bpffs=/sys/fs/bpf/x",
      "--decap=xdp",
      "--healthz-port=8080",
      "--healthz-ip=198.18.0.1",
      "--subnet-lease-renew-margin=5",
      "--log-format=json",
      "--log-level=debug",
    ]);
    expect(o.backend).toBe("ebpf-vxlan");
    expect(o.registry).toEqual({ kind: "sqlite", path: "/tmp/r.db" });
    expect(o.http).toEqual({ host: "0.0.0.0", port: 9000 });
    expect(o.leaseTtlMs).toBe(5_400_000);
    expect(o.decap).toBe("xdp");
    expect(o.healthz).toEqual({ host: "198.18.0.1", port: 8080 });
    expect(o.renewMarginMs).toBe(300_000);
    expect(o.logFormat).toBe("json");
  });
  test("durations", () => {
    expect(parseDuration("24h")).toBe(86_400_000);
    expect(parseDuration("500ms")).toBe(500);
    expect(parseDuration("1.5s")).toBe(1500);
    expect(parseDuration("10")).toBeNull();
    expect(parseDuration("h")).toBeNull();
  });
  test("single-dash normalisation leaves one-letter flags and values alone", () => {
    expect(normalizeArgv(["-f", "x", "-iface=eth0", "--", "-weird"])).toEqual([
      "-f",
      "x",
      "--iface=eth0",
      "--",
      "-weird",
    ]);
  });
});

describe("every bad flag is one line naming the flag, the value and what is allowed", () => {
  const bad: [string[], RegExp, Record<string, string>?][] = [
    [["--backend=foo"], /^--backend=foo: must be one of ebpf-vxlan, vxlan, host-gw, alloc$/],
    [["--decap=dpdk"], /^--decap=dpdk: must be one of auto, xdp, tc$/],
    [["--public-ip=1.2.3"], /^--public-ip=1\.2\.3: must be an IPv4 address/],
    [["--iface-can-reach=nope"], /^--iface-can-reach=nope: must be an IPv4 or IPv6 address/],
    [["--public-ipv6=198.18.0.1"], /^--public-ipv6=198\.18\.0\.1: must be an IPv6 address/],
    [["--public-ipv6=::ffff:198.18.0.1"], /^--public-ipv6=::ffff:198\.18\.0\.1: must be an IPv6 address/],
    [["--healthz-ip=::1"], /^--healthz-ip=::1: must be an IPv4 address/],
    [["--healthz-port=99999"], /^--healthz-port=99999: must be a port number/],
    [["--http=localhost"], /^--http=localhost: must be HOST:PORT/],
    [["--lease-ttl=forever"], /^--lease-ttl=forever: must be a duration/],
    [["--lease-ttl=10ms"], /^--lease-ttl=10ms: must be a duration of at least 1s/],
    [["--subnet-lease-renew-margin=0"], /^--subnet-lease-renew-margin=0: must be a whole number of minutes/],
    [["--iface-regex=("], /^--iface-regex=\(: must be a valid regular expression/],
    [["--registry=etcd:x"], /^--registry=etcd:x: must be sqlite:PATH/],
    [
      ["--etcd-endpoints=127.0.0.1:2379"],
      /^--etcd-endpoints=127\.0\.0\.1:2379: must be a comma-separated list of http\(s\):\/\/HOST:PORT$/,
    ],
    [["--etcd-prefix=coreos"], /^--etcd-prefix=coreos: must be a key path/],
    [["--log-level=loud"], /^--log-level=loud: must be one of debug, info, warn, error$/],
    [["--log-format=xml"], /^--log-format=xml: must be one of logfmt, json$/],
    [["--node-name=a b"], /^--node-name=a b: must be 1-63 letters/],
    [["--bpffs=relative"], /^--bpffs=relative: must be an absolute path/],
    [["--state-dir=rel"], /^--state-dir=rel: must be an absolute path/],
    [
      ["--etcd-endpointz=x"],
      /^unknown flag --etcd-endpointz for "tartan agent"; did you mean --etcd-endpoints\?/,
    ],
    [["--iface"], /^flag --iface needs a value/],
    [["--ip-masq=maybe"], /switch|unknown flag/],
    [["stray"], /takes no arguments/],
    [["--registry=sqlite:/a", "--etcd-endpoints=http://h:1"], /both choose a registry/],
    [["--etcd-endpoints=http://h:1", "--etcd-certfile=/c"], /--etcd-certfile and --etcd-keyfile go together/],
    [[], /^FLANNELD_IP_MASQ=perhaps: must be true or false$/, { FLANNELD_IP_MASQ: "perhaps" }],
    [[], /^--backend=|^--public-ip=bad: must be an IPv4/, { FLANNELD_PUBLIC_IP: "bad" }],
  ];
  for (const [argv, re, env] of bad)
    test(argv.join(" ") || JSON.stringify(env), () => {
      expect(() => agent(argv, env ?? {})).toThrow(re);
    });
});

describe("the command line", () => {
  const capture = async (argv: string[]) => {
    const origOut = process.stdout.write.bind(process.stdout);
    const origErr = process.stderr.write.bind(process.stderr);
    let out = "";
    let err = "";
    process.stdout.write = ((s: string) => {
      out += s;
      return true;
    }) as typeof process.stdout.write;
    process.stderr.write = ((s: string) => {
      err += s;
      return true;
    }) as typeof process.stderr.write;
    try {
      const code = await main(argv);
      return { code, out, err };
    } finally {
      process.stdout.write = origOut;
      process.stderr.write = origErr;
    }
  };
  test("a bad flag exits 2 with one line on stderr", async () => {
    const r = await capture(["agent", "--backend=foo"]);
    expect(r.code).toBe(2);
    expect(r.err).toBe("tartan: --backend=foo: must be one of ebpf-vxlan, vxlan, host-gw, alloc\n");
  });
  test("an unknown command lists the commands", async () => {
    const r = await capture(["fly"]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/unknown command "fly"; commands: agent, leases/);
  });
  test("help and --help teach every flag", async () => {
    const r = await capture(["agent", "--help"]);
    expect(r.code).toBe(0);
    for (const f of [
      "--etcd-endpoints",
      "--iface-can-reach",
      "--subnet-lease-renew-margin",
      "--backend",
      "--decap",
      "FLANNELD_IFACE",
    ])
      expect(r.out).toContain(f);
    expect((await capture(["help"])).out).toContain("tartan agent --backend=ebpf-vxlan");
    expect((await capture(["help", "docker-opts"])).out).toContain("-k, --key=VALUE");
  });
  test("version", async () => {
    expect((await capture(["version"])).out).toMatch(/^tartan \d+\.\d+\.\d+ \(\w+\)\n$/);
  });
  test("registry commands take the same registry flags", () => {
    const o = parseRegistryCommand(
      "leases",
      ["-etcd-endpoints=http://127.0.0.1:2379,http://127.0.0.2:2379", "--json"],
      {},
    );
    expect(o.registry).toEqual({
      kind: "etcd",
      endpoints: ["http://127.0.0.1:2379", "http://127.0.0.2:2379"],
      prefix: "/coreos.com/network",
    });
    expect(o.json).toBe(true);
  });
  test("config set refuses an invalid file and changes nothing", async () => {
    const dir = `/tmp/tartan-unit-cfg-${process.pid}`;
    await Bun.write(`${dir}/bad.json`, '{"Network":"10.0.0.0/16","Backend":{"Type":"udp"}}');
    const r = await capture(["config", "set", `${dir}/bad.json`, `--registry=sqlite:${dir}/r.db`]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/Backend\.Type="udp": must be one of/);
    expect(await Bun.file(`${dir}/r.db`).exists()).toBe(false);
    await Bun.write(`${dir}/good.json`, '{"Network":"10.0.0.0/16"}');
    expect((await capture(["config", "set", `${dir}/good.json`, `--registry=sqlite:${dir}/r.db`])).code).toBe(
      0,
    );
    const g = await capture(["config", "get", `--registry=sqlite:${dir}/r.db`]);
    expect(g.out).toBe('{"Network":"10.0.0.0/16"}\n');
    (await import("node:fs")).rmSync(dir, { recursive: true, force: true });
  });
});
