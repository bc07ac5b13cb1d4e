/**
 * Agents on a real etcd, seen the way a flannel node and an operator see them: keys and
 * JSON byte-for-byte flannel's; a lease written by hand with etcdctl (as a flannel node
 * writes it) reaches every agent and is programmed, and its deletion unprograms it; a
 * restarted agent keeps its subnet; short TTLs are renewed; malformed records are
 * skipped, counted in /metrics, and change nothing.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { parseSubnetEnv } from "../../src/config/subnet-env.ts";
import { REMOVAL_GRACE_MS } from "../../src/lease/removal-grace.ts";
import { Cluster } from "../helpers/cluster.ts";
import { until } from "../helpers/netns.ts";
import { isRoot, status, waitReady } from "../helpers/tartan.ts";

const PREFIX = "/coreos.com/network/subnets/";

describe.skipIf(!isRoot())("agents on etcd", () => {
  let cl: Cluster;
  beforeAll(async () => {
    // 6 s leases renewed 3 s before expiry: several renewals happen while the suite runs
    cl = await Cluster.create({
      backends: ["vxlan", "vxlan"],
      registry: "etcd",
      tag: "ea",
      agentFlags: ["--lease-ttl=6s", "--subnet-lease-renew-margin=1"],
    });
  }, 120_000);
  afterAll(async () => {
    await cl?.close();
  });
  const etcdctl = (args: string[]) => cl.etcd!.etcdctl(args);

  test("two agents hold distinct subnets under flannel's exact keys and JSON", async () => {
    const keys = (await etcdctl(["get", "--prefix", "--keys-only", PREFIX]))
      .split("\n")
      .filter(Boolean)
      .sort();
    expect(keys).toHaveLength(2);
    for (const n of cl.nodes) {
      const env = parseSubnetEnv(readFileSync(n.subnetFile, "utf8"));
      const key = `${PREFIX}198.19.${(env.subnet.ip >>> 8) & 255}.0-24`;
      expect(keys).toContain(key);
      const value = (await etcdctl(["get", "--print-value-only", key])).trim();
      const s = await status(cl.lab, n.ns);
      const mac = s.leases.find((l) => l.own)!.vtepMac!;
      expect(value).toBe(
        `{"PublicIP":"${n.ip}","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${mac}"}}`,
      );
    }
  });

  test("a lease written by hand in flannel's format reaches every agent and is programmed; deleting it unprograms it", async () => {
    const key = `${PREFIX}198.19.200.0-24`;
    await etcdctl([
      "put",
      key,
      '{"PublicIP":"198.18.0.99","BackendType":"vxlan","BackendData":{"VtepMAC":"0e:11:22:33:44:55","VNI":1}}',
    ]);
    for (const n of cl.nodes) {
      await until(
        async () =>
          (await status(cl.lab, n.ns)).leases.some((l) => l.subnet === "198.19.200.0/24" && l.programmed),
        `${n.ns} programs the hand-written lease`,
      );
      expect(await cl.lab.must(n.ns, ["ip", "route", "show", "198.19.200.0/24"])).toContain(
        "via 198.19.200.0 dev flannel.1 onlink",
      );
      expect(await cl.lab.must(n.ns, ["bridge", "fdb", "show", "dev", "flannel.1"])).toContain(
        "0e:11:22:33:44:55 dst 198.18.0.99",
      );
    }
    await etcdctl(["del", key]);
    for (const n of cl.nodes) {
      await until(
        async () => !(await status(cl.lab, n.ns)).leases.some((l) => l.subnet === "198.19.200.0/24"),
        `${n.ns} drops it`,
      );
      // the route goes when the removal grace ends (a node re-acquiring its lease keeps it)
      await until(
        async () => (await cl.lab.must(n.ns, ["ip", "route", "show", "198.19.200.0/24"])).trim() === "",
        `${n.ns} removes its route once the removal grace (${REMOVAL_GRACE_MS} ms) is over`,
      );
    }
  });

  test("short TTLs are renewed before they expire, and the lease keeps its key", async () => {
    const n = cl.nodes[0]!;
    const before = (await status(cl.lab, n.ns)).metrics.renewals;
    await until(
      async () => (await status(cl.lab, n.ns)).metrics.renewals >= before + 2,
      "two more renewals",
      20_000,
    );
    const s = await status(cl.lab, n.ns);
    expect(s.lease).not.toBeNull();
    expect(s.ready.ok).toBe(true);
    expect(s.leases).toHaveLength(2);
  }, 30_000);

  test("a restarted agent keeps its subnet", async () => {
    const n = cl.nodes[1]!;
    const before = readFileSync(n.subnetFile, "utf8");
    n.agent.proc.kill("SIGKILL");
    await n.agent.proc.exited;
    n.agent = cl.startAgent(n, "agent-2-again");
    await waitReady(cl.lab, n.ns, n.agent);
    expect(readFileSync(n.subnetFile, "utf8")).toBe(before);
    expect(await cl.lab.log(n.agent)).toContain("reusing the lease that carries our public IP");
  }, 60_000);

  test("malformed records are skipped, counted in /metrics, and programmed nowhere; the agents keep running", async () => {
    const bad: [string, string][] = [
      ["198.19.201.0-24", "not json"],
      ["198.19.202.0-24", '{"PublicIP":7}'],
      [
        "10.9.0.0-24",
        '{"PublicIP":"198.18.0.98","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:98"}}',
      ],
      ["198.19.203.7-24", '{"PublicIP":"198.18.0.97"}'],
      [
        "198.19.204.0-24",
        '{"PublicIP":"198.18.0.300","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:97"}}',
      ],
      [
        "198.19.205.0-24",
        '{"PublicIP":"198.18.0.96","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"nope"}}',
      ],
    ];
    const metric = async (ns: string) =>
      Number(
        /^tartan_registry_invalid_records_total (\d+)$/m.exec((await cl.lab.http(ns, "/metrics")).body)?.[1],
      );
    const before = await Promise.all(cl.nodes.map((n) => metric(n.ns)));
    for (const [k, v] of bad) await etcdctl(["put", `${PREFIX}${k}`, v]);
    for (const [i, n] of cl.nodes.entries()) {
      await until(
        async () => (await metric(n.ns)) >= before[i]! + bad.length,
        `${n.ns} counts ${bad.length} invalid records`,
      );
      const s = await status(cl.lab, n.ns);
      expect(s.leases).toHaveLength(2);
      expect(s.health.ok).toBe(true);
      expect(n.agent.proc.exitCode).toBeNull();
      const routes = await cl.lab.must(n.ns, ["ip", "route", "show"]);
      for (const [k] of bad) expect(routes).not.toContain(k.split("-")[0]!);
      const log = await cl.lab.log(n.agent);
      expect(log).toContain('msg="skipping invalid registry record" node=');
    }
    for (const [k] of bad) await etcdctl(["del", `${PREFIX}${k}`]);
  });
});
