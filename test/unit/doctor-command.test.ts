import { describe, expect, test } from "bun:test";
import { doctorCommand, parseDoctorArgs } from "../../src/cli/doctor.ts";
import { commandHelp } from "../../src/cli/help.ts";
import { parseIp4 } from "../../src/config/cidr.ts";
import { judge } from "../../src/doctor/checks.ts";
import { REPAIRABLE } from "../../src/doctor/fix.ts";
import { exitCodeOf, formatReport, summarize } from "../../src/doctor/report.ts";
import { doctorInputFromAgent } from "../../src/doctor/run.ts";
import { resolveSettings } from "../../src/doctor/settings.ts";
import { ValidationError } from "../../src/validation.ts";
import { healthy, withLink } from "./doctor-fixture.ts";
import { healthyDual } from "./doctor-fixture-dual.ts";

const noEnv = () => ({ kind: "missing" as const });

describe("doctor flags", () => {
  test("agent flags are parsed as the agent parses them; doctor's own flags beside them", () => {
    const p = parseDoctorArgs(
      ["--fix", "--json", "-iface=eth0", "--subnet-file=/tmp/s.env", "--no-probe", "--cni-conf-dir=/tmp/cni"],
      {},
    );
    expect(p.run.fix).toBe(true);
    expect(p.json).toBe(true);
    expect(p.run.probe).toBe(false);
    expect(p.run.input.agent.ifaces).toEqual(["eth0"]);
    expect(p.run.input.agent.subnetFile).toBe("/tmp/s.env");
    expect(p.run.input.cniConfDir).toBe("/tmp/cni");
    expect([...p.run.input.explicit].sort()).toEqual(["iface", "subnet-file"]);
  });
  test("bad values are usage errors naming the flag", () => {
    expect(() => parseDoctorArgs(["--backend=udp"], {})).toThrow(ValidationError);
    expect(() => parseDoctorArgs(["--probe-timeout=99"], {})).toThrow("--probe-timeout=99");
    expect(() => parseDoctorArgs(["--fx"], {})).toThrow("did you mean --fix?");
    expect(() => parseDoctorArgs(["extra"], {})).toThrow("takes no arguments");
  });
  test("FLANNELD_* variables count as given, like for the agent", () => {
    const p = parseDoctorArgs([], { FLANNELD_SUBNET_FILE: "/x/subnet.env" });
    expect(p.run.input.agent.subnetFile).toBe("/x/subnet.env");
    expect(p.run.input.explicit.has("subnet-file")).toBe(true);
  });
  test("--help teaches: every check area, the exit codes and what --fix does", () => {
    const h = commandHelp(doctorCommand);
    for (const s of ["--fix", "--json", "--cni-conf-dir", "Exit code", "rp_filter", "subnet.env", "--strict"])
      expect(h).toContain(s);
  });
});

describe("doctor settings precedence: flag > running agent > subnet.env/defaults", () => {
  const agentOpts = {
    backend: "vxlan",
    subnetFile: "/agent/subnet.env",
    ipMasq: true,
    ifaces: ["eth1"],
    registry: {
      kind: "etcd",
      endpoints: ["https://e:2379"],
      prefix: "/coreos.com/network",
      password: "<redacted>",
    },
    publicIp: "198.18.0.9",
  };
  test("the agent's effective options are used where no flag is given", () => {
    const p = parseDoctorArgs([], {});
    const r = resolveSettings(p.run.input, agentOpts, null, noEnv);
    expect(r.settings.subnetFile).toBe("/agent/subnet.env");
    expect(r.settings.ipMasq).toBe(true);
    expect(r.settings.backend).toBe("vxlan");
    expect(r.iface.names).toEqual(["eth1"]);
    expect(r.publicIp).toBe(parseIp4("198.18.0.9"));
    expect(r.registry).toEqual({
      kind: "etcd",
      endpoints: ["https://e:2379"],
      prefix: "/coreos.com/network",
    });
    expect(r.settings.sources.subnetFile).toBe("agent");
  });
  test("a flag wins over the agent", () => {
    const p = parseDoctorArgs(
      ["--subnet-file=/flag/subnet.env", "--no-ip-masq", "--registry=sqlite:/r.db"],
      {},
    );
    const r = resolveSettings(p.run.input, agentOpts, null, noEnv);
    expect(r.settings.subnetFile).toBe("/flag/subnet.env");
    expect(r.settings.ipMasq).toBe(false);
    expect(r.registry).toEqual({ kind: "sqlite", path: "/r.db" });
  });
  test("inside the agent, its own options are the settings (nothing looked up elsewhere)", () => {
    const o = { ...parseDoctorArgs([], {}).run.input.agent, subnetFile: "/own/subnet.env", ipMasq: true };
    const r = resolveSettings(doctorInputFromAgent(o), { subnetFile: "/other" }, null, noEnv);
    expect(r.settings.subnetFile).toBe("/own/subnet.env");
    expect(r.settings.ipMasq).toBe(true);
    expect(r.settings.sources.subnetFile).toBe("flag");
  });
  test("without an agent, --ip-masq comes from subnet.env", () => {
    const p = parseDoctorArgs([], {});
    const env = () => ({
      kind: "ok" as const,
      env: { network: { ip: 0, len: 16 }, subnet: { ip: 0, len: 24 }, mtu: 1450, ipMasq: true },
    });
    const r = resolveSettings(p.run.input, null, null, env);
    expect(r.settings.ipMasq).toBe(true);
    expect(r.settings.sources.ipMasq).toBe("subnet.env");
  });
});

describe("doctor report", () => {
  test("exit code: problems fail; warnings only with --strict", () => {
    const checks = judge(healthy());
    expect(exitCodeOf(checks, false)).toBe(0);
    const warn = judge({ ...healthy(), agent: { ok: false, error: "refused" } });
    expect(exitCodeOf(warn, false)).toBe(0);
    expect(exitCodeOf(warn, true)).toBe(1);
    const bad = judge(withLink(healthy(), "cni0", { addrs: ["198.19.9.1/24"] }));
    expect(exitCodeOf(bad, false)).toBe(1);
  });
  test("text: one line per check, then why and fix for what is not ok, and what --fix changed", () => {
    const checks = judge(withLink(healthy(), "cni0", { addrs: ["198.19.9.1/24"] }));
    const text = formatReport({
      node: "node1",
      backend: "vxlan",
      kernel: "6.18",
      probes: null,
      at: "now",
      settings: {},
      checks,
      fixes: [{ id: "bridge", changed: ["ip addr del 198.19.9.1/24 dev cni0"], error: null }],
      summary: summarize(checks),
      exitCode: 1,
    });
    expect(text).toContain("PROBLEM  bridge");
    expect(text).toContain("cni0 has 198.19.9.1/24, lease 198.19.1.0/24 needs exactly 198.19.1.1/24");
    expect(text).toContain("  why: the CNI bridge plugin refuses every new pod");
    expect(text).toContain("--fix bridge: ip addr del 198.19.9.1/24 dev cni0");
    expect(text).toContain("16 ok, 0 warning(s), 1 problem(s) after --fix");
  });
  test("every check --fix claims to repair has a repair", () => {
    // the IPv6 checks run on dual-stack nodes only
    const all = [...judge(healthy()), ...judge(healthyDual())].map((c) => c.id);
    for (const id of REPAIRABLE) expect(all).toContain(id);
  });
});
