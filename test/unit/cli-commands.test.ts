/**
 * The command line as a user meets it, in-process: every command listed and helped the same
 * way, every error one `tartan: …` line with the right exit code, readers that create
 * nothing, flanneld's flags from real units, and the README's flag tables in step.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { COMMANDS } from "../../src/cli/commands.ts";
import { readEnvFile } from "../../src/cli/docker-opts.ts";
import type { FlagSet } from "../../src/cli/flag-def.ts";
import { AGENT_FLAGS, parseAgentOptions } from "../../src/cli/options.ts";
import { README_FLAG_SETS, renderFlagSections, sectionNames } from "../../src/cli/readme.ts";
import { bySubnet } from "../../src/cli/registry-commands.ts";
import { formatStatus } from "../../src/cli/status.ts";
import { silentLogger } from "../../src/log.ts";
import { main } from "../../src/main.ts";
import { SqliteRegistry } from "../../src/registry/sqlite.ts";
import type { AgentStatus } from "../../src/status/status.ts";

const DIR = `/tmp/tartan-unit-cli-${process.pid}`;
mkdirSync(DIR, { recursive: true });
afterAll(() => rmSync(DIR, { recursive: true, force: true }));

/** Runs `tartan ARGV` in-process with CNI_* unset, capturing stdout and stderr. */
async function tartan(argv: string[], env: Record<string, string> = {}) {
  const origOut = process.stdout.write.bind(process.stdout);
  const origErr = process.stderr.write.bind(process.stderr);
  const saved = { ...process.env };
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
  for (const k of Object.keys(process.env))
    if (k.startsWith("CNI_") || k.startsWith("FLANNELD_")) delete process.env[k];
  Object.assign(process.env, env);
  try {
    const code = await main(argv);
    return { code, out, err };
  } finally {
    process.stdout.write = origOut;
    process.stderr.write = origErr;
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  }
}

/** One line on stderr starting `tartan: `, nothing on stdout. */
function oneLine(r: { out: string; err: string }): string {
  expect(r.out).toBe("");
  expect(r.err).toMatch(/^tartan: [^\n]+\n$/);
  return r.err.slice("tartan: ".length, -1);
}

const NAMES = [
  "agent",
  "leases",
  "config",
  "status",
  "doctor",
  "docker-opts",
  "cleanup",
  "cni",
  "version",
  "help",
];

describe("help comes from the one command table", () => {
  test("the table has every command, in help's order", () => {
    expect(COMMANDS.map((c) => c.name)).toEqual(NAMES);
  });
  test("`tartan` (exit 2) and `tartan help` (exit 0) list every command, doctor included", async () => {
    const bare = await tartan([]);
    const help = await tartan(["help"]);
    expect(bare.code).toBe(2);
    expect(help.code).toBe(0);
    expect(bare.out).toBe(help.out);
    for (const n of NAMES) expect(help.out).toMatch(new RegExp(`^  ${n} +\\S`, "m"));
  });
  for (const name of NAMES)
    test(`tartan help ${name} = tartan ${name} --help = -h = -help`, async () => {
      const h = await tartan(["help", name]);
      expect(h.code).toBe(0);
      expect(h.out).toMatch(/^Usage: /);
      expect(h.err).toBe("");
      for (const spelling of ["--help", "-h", "-help"]) {
        const r = await tartan([name, spelling]);
        expect(r.code).toBe(0);
        expect(r.out).toBe(h.out);
      }
    });
  test("`tartan cni --help` is help, not a CNI error object", async () => {
    const r = await tartan(["cni", "--help"]);
    expect(r.out).toContain("CNI_COMMAND=ADD|DEL|CHECK|VERSION");
    expect(r.out).not.toContain('"code"');
  });
  test("`tartan cni` typed by a person (no CNI_COMMAND) says how it is run", async () => {
    const r = await tartan(["cni"]);
    expect(r.code).toBe(2);
    expect(oneLine(r)).toMatch(/^cni is the CNI plugin: a container runtime runs it with CNI_COMMAND/);
  });
  test("the usage of `help leases` shows delete; `help config` shows get and set", async () => {
    expect((await tartan(["help", "leases"])).out).toContain("tartan leases delete SUBNET");
    const c = (await tartan(["help", "config"])).out;
    expect(c).toContain("tartan config get");
    expect(c).toContain("tartan config set FILE");
  });
  test("help for an unknown command, and an unknown command, list the commands", async () => {
    const h = await tartan(["help", "fly"]);
    expect(h.code).toBe(2);
    expect(oneLine(h)).toBe(`no help for "fly"; commands: ${NAMES.join(", ")}`);
    const u = await tartan(["leasse"]);
    expect(u.code).toBe(2);
    expect(oneLine(u)).toBe(
      `unknown command "leasse"; did you mean "leases"?; commands: ${NAMES.join(", ")}`,
    );
  });
  test("--version and -version, as flanneld users type them; agent --version too", async () => {
    for (const argv of [
      ["--version"],
      ["-version"],
      ["version"],
      ["agent", "--version"],
      ["agent", "-version"],
    ]) {
      const r = await tartan(argv);
      expect(r.code).toBe(0);
      expect(r.out).toMatch(/^tartan \d+\.\d+\.\d+ \(\w+\)\n$/);
    }
  });
});

describe("flanneld's flags from real unit files", () => {
  test("-v=2 / --v=2 / -v 2 mean --log-level=debug; -v=0 keeps info; an explicit --log-level wins", () => {
    for (const argv of [["-v=2"], ["--v=2"], ["-v", "2"], ["-v=1"]])
      expect(parseAgentOptions(argv, {}).logLevel).toBe("debug");
    expect(parseAgentOptions(["-v=0"], {}).logLevel).toBe("info");
    expect(parseAgentOptions(["-v=3", "--log-level=warn"], {}).logLevel).toBe("warn");
    expect(parseAgentOptions([], { FLANNELD_V: "2" }).logLevel).toBe("debug");
    expect(() => parseAgentOptions(["-v=loud"], {})).toThrow(/^--v=loud: must be a verbosity level 0\.\.10/);
  });
  test("--kube-subnet-mgr and its companions, as flanneld takes them (flags or FLANNELD_*)", () => {
    const env = { NODE_NAME: "node-1" };
    const o = parseAgentOptions(
      [
        "-kube-subnet-mgr",
        "--kube-api-url=https://10.0.0.1:6443",
        "--kubeconfig-file=/etc/kubernetes/kubelet.conf",
        "--kube-annotation-prefix=tartan.example.com/net",
        "--set-node-network-unavailable=false",
      ],
      env,
    );
    expect(o.kube).toEqual({
      apiUrl: "https://10.0.0.1:6443",
      kubeconfigFile: "/etc/kubernetes/kubelet.conf",
      annotationPrefix: "tartan.example.com/net",
      setNodeNetworkUnavailable: false,
    });
    expect([o.nodeName, o.netConfigPath, o.bpffs]).toEqual([
      "node-1",
      "/etc/kube-flannel/net-conf.json",
      "/sys/fs/bpf/tartan/node-1",
    ]);
    const fromEnv = parseAgentOptions([], { ...env, FLANNELD_KUBE_SUBNET_MGR: "true" });
    expect(fromEnv.kube).toEqual({
      apiUrl: null,
      kubeconfigFile: null,
      annotationPrefix: "flannel.alpha.coreos.com",
      setNodeNetworkUnavailable: true,
    });
    expect(fromEnv.fromEnv).toEqual(["kube-subnet-mgr"]);
    // a switch turned off asks for nothing; the other kube flags then change nothing
    expect(
      parseAgentOptions(["--kube-subnet-mgr=false", "--kube-api-url=https://x:6443"], {}).kube,
    ).toBeNull();
  });
  test("--kube-subnet-mgr: bad values and conflicts are one line naming the flag", () => {
    const env = { NODE_NAME: "node-1" };
    const cases: [string[], string][] = [
      [
        ["--kube-subnet-mgr", "--etcd-endpoints=https://10.0.0.1:2379"],
        "--kube-subnet-mgr and --etcd-endpoints=https://10.0.0.1:2379 both choose where leases live: give one of them (the Kubernetes API keeps them in Node annotations)",
      ],
      [
        ["--kube-subnet-mgr", "--registry=sqlite:/tmp/r.db"],
        "--kube-subnet-mgr and --registry=sqlite:/tmp/r.db both choose where leases live: give one of them (the Kubernetes API keeps them in Node annotations)",
      ],
      [
        ["--kube-subnet-mgr", "--kube-api-url=10.0.0.1:6443"],
        "--kube-api-url=10.0.0.1:6443: must be an http:// or https:// URL like https://10.0.0.1:6443",
      ],
      [
        ["--kube-subnet-mgr", "--kube-annotation-prefix=a/b/c"],
        "--kube-annotation-prefix=a/b/c: may contain at most one slash",
      ],
      [
        ["--kube-subnet-mgr", "--kube-annotation-prefix=Example.COM"],
        "--kube-annotation-prefix=Example.COM: must be a lowercase domain name, optionally followed by /word (e.g. flannel.alpha.coreos.com)",
      ],
      [
        ["--kube-subnet-mgr", "--node-name=node-2"],
        "--node-name=node-2 and NODE_NAME=node-1 name different Nodes: give one of them",
      ],
    ];
    for (const [argv, msg] of cases) expect(() => parseAgentOptions(argv, env)).toThrow(msg);
    expect(() => parseAgentOptions(["--kube-subnet-mgr"], { NODE_NAME: "Node_1" })).toThrow(
      'NODE_NAME="Node_1": not a Kubernetes Node name',
    );
  });
  test("--kube-subnet-mgr: our Node is NODE_NAME, else --node-name, else this pod's spec.nodeName; never the host name", () => {
    expect(parseAgentOptions(["--kube-subnet-mgr", "--node-name=n9"], {}).nodeName).toBe("n9");
    const pod = parseAgentOptions(["--kube-subnet-mgr"], {
      POD_NAME: "tartan-x",
      POD_NAMESPACE: "kube-flannel",
    });
    expect(pod.kubeNodeFromPod).toEqual({ namespace: "kube-flannel", pod: "tartan-x" });
    expect(() => parseAgentOptions(["--kube-subnet-mgr"], {})).toThrow(
      "--kube-subnet-mgr: cannot tell which Node this is: set NODE_NAME (the downward API's spec.nodeName), or POD_NAME and POD_NAMESPACE, or give --node-name",
    );
  });
  test("flanneld flags Tartan does not implement are refused with what to do", () => {
    const cases: [string, RegExp][] = [
      ["--ip-blackhole-route", /^--ip-blackhole-route: Tartan adds no blackhole route/],
      [
        "-subnet-dir=/run/flannel/networks",
        /^--subnet-dir=\/run\/flannel\/networks: flannel's multi-network mode/,
      ],
      ["--networks=a,b", /multi-network mode .* run one agent per network/],
      ["--remote=10.0.0.1:8080", /client\/server mode .* --etcd-endpoints/],
      ["--charon-exec-path=/usr/lib/ipsec/charon", /ipsec backend is not supported/],
    ];
    for (const [flag, re] of cases) expect(() => parseAgentOptions([flag], {})).toThrow(re);
  });
  test("flags for what Tartan does its own way are accepted, and reported with why", () => {
    const o = parseAgentOptions(
      [
        "--iptables-resync=10",
        "--iptables-forward-rules=false",
        "-ip-masq-fully-random-disable",
        "-vmodule=x=2",
      ],
      {},
    );
    expect(o.ignored.map((i) => i.flag)).toEqual([
      "--iptables-resync=10",
      "--iptables-forward-rules=false",
      "--ip-masq-fully-random-disable",
      "--vmodule=x=2",
    ]);
    expect(o.ignored[0]!.why).toContain("nft table");
    expect(() => parseAgentOptions(["--iptables-resync=soon"], {})).toThrow(
      /^--iptables-resync=soon: must be a whole number/,
    );
  });
  test("a bad FLANNELD_* value names the variable it came from", () => {
    expect(() => parseAgentOptions([], { FLANNELD_PUBLIC_IP: "bad" })).toThrow(
      "--public-ip=bad: must be an IPv4 address like 198.18.0.1 (from FLANNELD_PUBLIC_IP)",
    );
  });
});

describe("read-only commands never create a registry", () => {
  const typo = join(DIR, "typo", "deeper", "reg.db");
  const want = `sqlite registry ${typo} does not exist; create it with \`tartan config set FILE --registry=sqlite:${typo}\` (or start an agent on it), or name the right file with --registry`;
  for (const argv of [
    ["leases"],
    ["leases", "--json"],
    ["config", "get"],
    ["leases", "delete", "10.1.2.0/24"],
  ])
    test(`tartan ${argv.join(" ")} on a path that is not there: exit 2, one line, nothing created`, async () => {
      const r = await tartan([...argv, `--registry=sqlite:${typo}`]);
      expect(r.code).toBe(2);
      expect(oneLine(r)).toBe(want);
      expect(existsSync(join(DIR, "typo"))).toBe(false);
    });
  test("an empty file is refused, not turned into a registry", async () => {
    const empty = join(DIR, "empty.db");
    writeFileSync(empty, "");
    const r = await tartan(["leases", `--registry=sqlite:${empty}`]);
    expect(r.code).toBe(2);
    expect(oneLine(r)).toMatch(/is an empty file, not a registry; create one with `tartan config set FILE/);
    expect(readFileSync(empty, "utf8")).toBe("");
  });
});

describe("every error is one `tartan: …` line", () => {
  const reg = join(DIR, "r1.db");
  test("config get with no config, leases delete of a lease that is not there: exit 1", async () => {
    (await SqliteRegistry.open({ path: reg, log: silentLogger })).close();
    const g = await tartan(["config", "get", `--registry=sqlite:${reg}`]);
    expect(g.code).toBe(1);
    expect(oneLine(g)).toBe(
      `no network config in sqlite:${reg}; store one with \`tartan config set net-conf.json --registry=sqlite:${reg}\``,
    );
    const d = await tartan(["leases", "delete", "10.1.2.0-24", `--registry=sqlite:${reg}`]);
    expect(d.code).toBe(1);
    expect(oneLine(d)).toBe(
      `no lease 10.1.2.0/24 in sqlite:${reg} (\`tartan leases --registry=sqlite:${reg}\` lists them)`,
    );
  });
  test("status with no agent names the address it asked and the flag that changes it", async () => {
    const server = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("") });
    const port = server.port;
    server.stop(true);
    const r = await tartan(["status", `--http=127.0.0.1:${port}`]);
    expect(r.code).toBe(1);
    expect(oneLine(r)).toBe(
      `no agent answers at http://127.0.0.1:${port} (is \`tartan agent\` running? if it listens elsewhere, give --http=HOST:PORT)`,
    );
  });
  test("status against something that is not an agent says so", async () => {
    const server = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch: () => new Response("not found", { status: 404 }),
    });
    try {
      const r = await tartan(["status", `--http=127.0.0.1:${server.port}`]);
      expect(r.code).toBe(1);
      expect(oneLine(r)).toMatch(
        /\/v1\/status answered 404 with no agent status: is --http=127\.0\.0\.1:\d+ a Tartan agent\?$/,
      );
    } finally {
      server.stop(true);
    }
  });
  test("docker-opts names the file it could not read, and the flag only when it was not given", () => {
    expect(() => readEnvFile(join(DIR, "none.env"), true)).toThrow(
      `${join(DIR, "none.env")}: cannot read the flannel env file (no such file)`,
    );
    expect(() => readEnvFile(join(DIR, "none.env"), false)).toThrow(
      `${join(DIR, "none.env")}: cannot read the flannel env file (no such file); the agent writes it once it holds a lease, or read another file with -f PATH (--subnet-file=PATH)`,
    );
  });
  test("config: a missing action, a missing file", async () => {
    expect(oneLine(await tartan(["config"]))).toBe(
      'config needs an action: "tartan config get" or "tartan config set FILE"',
    );
    const f = join(DIR, "nope.json");
    expect(oneLine(await tartan(["config", "set", f]))).toBe(
      `${f}: cannot read it (no such file); config set needs flannel's net-conf.json`,
    );
  });
  test("config set warns, one line each, about keys it ignores, and stores the file", async () => {
    const f = join(DIR, "typo.json");
    writeFileSync(f, '{"network": "198.19.0.0/16", "SubnetLenght": 26}');
    const r = await tartan(["config", "set", f, `--registry=sqlite:${join(DIR, "r2.db")}`]);
    expect(r.code).toBe(0);
    expect(r.err).toBe(
      `tartan: warning: ${f}: unknown key "SubnetLenght" is ignored (flannel ignores it too); did you mean "SubnetLen"?\n`,
    );
    expect(r.out).toContain("Network 198.19.0.0/16, SubnetLen 24");
  });
});

describe("output a person reads", () => {
  test("leases are listed in subnet order, not text order", async () => {
    const path = join(DIR, "r3.db");
    const r = SqliteRegistry.open({ path, log: silentLogger });
    await r.setConfig('{"Network":"198.19.0.0/16"}');
    for (const n of [10, 2, 100, 9])
      await r.create(`198.19.${n}.0-24`, `{"PublicIP":"198.18.0.${n}","BackendType":"alloc"}`, null);
    await r.close();
    const out = await tartan(["leases", "--json", `--registry=sqlite:${path}`]);
    expect(out.code).toBe(0);
    const subnets = (JSON.parse(out.out) as { leases: { subnet: string }[] }).leases.map((l) => l.subnet);
    expect(subnets).toEqual(["198.19.2.0/24", "198.19.9.0/24", "198.19.10.0/24", "198.19.100.0/24"]);
    expect(
      ["x", "198.19.10.0-24", "198.19.2.0-24"]
        .map((key) => ({ key }))
        .sort(bySubnet)
        .map((k) => k.key),
    ).toEqual(["198.19.2.0-24", "198.19.10.0-24", "x"]);
  });
  test("status shows counters that are not zero; --verbose shows all", () => {
    const s = {
      node: "n1",
      version: "0.1.0",
      backend: "ebpf-vxlan",
      startedAt: "2026-01-01T00:00:00.000Z",
      network: "198.19.0.0/16",
      lease: null,
      registry: { description: "sqlite:/r.db", state: "ok", lastError: null, revision: 3 },
      subnetFile: { path: "/run/flannel/subnet.env", written: true },
      health: { ok: true, reasons: [] },
      ready: { ok: true, reasons: [] },
      leases: [],
      counters: { encap_ok: 12, drop_unknown_vtep: 0, decap_ok: 7, pass_arp: 0 },
    } as unknown as AgentStatus;
    const short = formatStatus(s);
    expect(short).toContain("encap_ok");
    expect(short).toContain("decap_ok");
    expect(short).not.toContain("drop_unknown_vtep");
    expect(short).toContain("(2 datapath counter(s) at zero not shown; --verbose lists them)");
    const all = formatStatus(s, true);
    expect(all).toContain("drop_unknown_vtep");
    expect(all).not.toContain("not shown");
  });
  test("status lists this node's lease first, then the others by address", () => {
    const lease = (subnet: string, own = false) => ({
      subnet,
      publicIp: "198.18.0.9",
      backendType: "vxlan",
      vni: 1,
      vtepMac: null,
      expiresAt: null,
      own,
      programmed: true,
    });
    const s = {
      node: "n1",
      version: "0.1.0",
      backend: "vxlan",
      startedAt: "2026-01-01T00:00:00.000Z",
      network: "198.19.0.0/16",
      lease: null,
      registry: { description: "sqlite:/r.db", state: "ok", lastError: null, revision: 3 },
      subnetFile: { path: "/run/flannel/subnet.env", written: true },
      health: { ok: true, reasons: [] },
      ready: { ok: true, reasons: [] },
      leases: [
        lease("198.19.74.0/24"),
        lease("198.19.9.0/24"),
        lease("198.19.28.0/24", true),
        lease("198.19.45.0/24"),
      ],
      counters: {},
    } as unknown as AgentStatus;
    const order = [...formatStatus(s).matchAll(/^(198\.19\.\d+\.0\/24)/gm)].map((m) => m[1]);
    expect(order).toEqual(["198.19.28.0/24", "198.19.9.0/24", "198.19.45.0/24", "198.19.74.0/24"]);
  });
});

describe("the README's flag tables are the declarations", () => {
  const readme = readFileSync(join(import.meta.dir, "../../README.md"), "utf8");
  test("each table is what the declarations render (run scripts/readme-flags.ts after changing a flag)", () => {
    expect(sectionNames(readme)).toEqual(["flanneld", "tartan", "flanneld-compat"]);
    expect(renderFlagSections(readme)).toBe(readme);
  });
  test("every agent flag but --help is in exactly one table", () => {
    const listed = Object.values(README_FLAG_SETS).flatMap((s: FlagSet) => Object.keys(s));
    const all = Object.keys(AGENT_FLAGS).filter((n) => n !== "help");
    expect([...listed].sort()).toEqual([...all].sort());
  });
});
