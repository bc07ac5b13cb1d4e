/**
 * Faults of a real etcd cluster: three members, each in its own namespace, and agents
 * given all three endpoints and a short --lease-ttl (6 s: a renewal every ~3 s, so
 * renewals are in flight during every fault). The leader killed; a follower killed;
 * quorum lost (two members down) for 10 s (CI) / 30 s (TARTAN_SOAK=1), then restored;
 * one member partitioned from the other two by nft (in the members' namespaces only); a
 * member replaced (`etcdctl member remove`, then `member add` of a new one).
 * Each is held to: 0 pings lost and the TCP stream intact, every agent healthy
 * (/healthz 200) throughout, its registry "degraded" while there is no quorum, and a
 * lease written after the fault (or after quorum returns) seen by every agent before a
 * deadline — how long that took is recorded, not asserted. Lease renewals keep working
 * across a leader change: every agent renews after it, never re-acquires.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import type { Cluster } from "../helpers/cluster.ts";
import type { TestEtcdCluster } from "../helpers/etcd.ts";
import { until } from "../helpers/netns.ts";
import { isRoot, status } from "../helpers/tartan.ts";
import { TrafficMonitor } from "../helpers/traffic-monitor.ts";
import { BACKEND, backendAvailable, expectZeroLoss, faultCluster, SOAK, timed } from "./report.ts";

const REGISTRY = "etcd" as const;
const MEMBERS = 3;
const QUORUM_LOSS_MS = SOAK ? 30_000 : 10_000;
const PARTITION_MS = SOAK ? 30_000 : 10_000;
/** The deadline for "every agent sees the change" (the figure itself is recorded). */
const SEEN_DEADLINE_MS = 30_000;
const PREFIX = "/coreos.com/network/subnets";
const probeValue = (i: number) =>
  JSON.stringify({
    PublicIP: `198.18.2.${i}`,
    BackendType: "vxlan",
    BackendData: { VNI: 1, VtepMAC: `0e:00:00:00:02:${i.toString(16).padStart(2, "0")}` },
  });
const probeCidr = (i: number) => `198.19.${210 + i}.0/24`;
const probeKey = (i: number) => probeCidr(i).replace("/", "-");

describe.skipIf(!isRoot() || !backendAvailable())(`faults: etcd cluster of ${MEMBERS} (${BACKEND})`, () => {
  let cl: Cluster;
  let ec: TestEtcdCluster;
  let probe = 0;
  beforeAll(async () => {
    cl = await faultCluster(REGISTRY, { tag: "fc", etcdMembers: MEMBERS, agentFlags: ["--lease-ttl=6s"] });
    ec = cl.etcdCluster!;
  }, 120_000);
  afterAll(async () => {
    await cl?.close();
  });
  // the probes of a test go when it ends: the cluster goes back to its three nodes
  afterEach(async () => {
    for (let i = 1; i <= probe; i++) await ec?.etcdctl(["del", `${PREFIX}/${probeKey(i)}`]).catch(() => {});
  });

  /** The namespace of member `m` (etcd<i> at 198.18.254.<i>). */
  const nsOf = (m: TestEtcdCluster["members"][number]) =>
    cl.lab.namespaces.find((x) => x.endsWith(`-etcd${new URL(m.endpoint).hostname.split(".")[3]}`))!;

  /**
   * Writes a new probe lease (retrying while the cluster cannot take writes), then waits
   * until every agent sees it: how long the write took, and then the seeing.
   */
  const probeSeen = async () => {
    const w = await timed(writeProbe);
    const s = await timed(() => everyAgentSees(w.value));
    return { writeMs: w.ms, seenMs: s.ms };
  };

  /** Writes a new probe lease (retrying while the cluster cannot take writes) and returns its number. */
  const writeProbe = async () => {
    const i = ++probe;
    await until(
      () =>
        ec
          // a short command timeout: the figure is the cluster's, not etcdctl's 5 s default
          .etcdctl(["put", `${PREFIX}/${probeKey(i)}`, probeValue(i)], { flags: ["--command-timeout=1s"] })
          .then(() => true)
          .catch(() => false),
      `etcd to take the write of probe ${i}`,
      SEEN_DEADLINE_MS,
    );
    return i;
  };

  /** Every agent ready, its registry ok, and seeing probe `i`. */
  const everyAgentSees = (i: number) =>
    until(
      async () => {
        for (const n of cl.nodes) {
          const s = await status(cl.lab, n.ns);
          if (s.registry.state !== "ok" || !s.ready.ok) return false;
          if (!s.leases.some((l) => l.subnet === probeCidr(i))) return false;
        }
        return true;
      },
      `every agent to see probe ${probeCidr(i)}`,
      SEEN_DEADLINE_MS,
    );

  /** /healthz of every agent, and its registry state. */
  const health = () =>
    Promise.all(
      cl.nodes.map(async (n) => {
        const h = await cl.lab.http(n.ns, "/healthz");
        const s = await status(cl.lab, n.ns).catch(() => null);
        return { healthz: h.status, registry: s?.registry.state ?? "no answer" };
      }),
    );

  /** Samples every agent's health every 500 ms while `fn` runs; returns fn's value and the worst /healthz seen. */
  const watchingHealth = async <T>(fn: () => Promise<T>) => {
    const bad: string[] = [];
    let on = true;
    const sampler = (async () => {
      while (on) {
        for (const [i, h] of (await health()).entries())
          if (h.healthz !== 200) bad.push(`agent ${i + 1}: /healthz ${h.healthz}`);
        await Bun.sleep(500);
      }
    })();
    try {
      return { value: await fn(), unhealthy: bad };
    } finally {
      on = false;
      await sampler;
    }
  };

  /** expectZeroLoss, with the agents' logs printed first when something was lost (the why). */
  const judge = async (...a: Parameters<typeof expectZeroLoss>) => {
    if (a[2].lost > 0 || !a[2].tcpIntact) console.log(await cl.logs());
    expectZeroLoss(...a);
  };

  const metrics = () => Promise.all(cl.nodes.map(async (n) => (await status(cl.lab, n.ns)).metrics));

  /** Every agent renewed at least once since `before` (a renewal every ~3 s), holding its lease. */
  const everyAgentRenews = (before: Awaited<ReturnType<typeof metrics>>) =>
    until(
      async () => {
        const now = await metrics();
        return now.every((m, i) => m.renewals > before[i]!.renewals);
      },
      "every agent to renew its lease",
      SEEN_DEADLINE_MS,
    );

  const renewalSummary = async (before: Awaited<ReturnType<typeof metrics>>) =>
    (await metrics()).map((m, i) => ({
      renewals: m.renewals - before[i]!.renewals,
      failures: m.renewalFailures - before[i]!.renewalFailures,
      reacquired: m.acquisitions - before[i]!.acquisitions,
    }));

  /** The member most agents hold connections to (the fault then moves them). */
  const busiestMember = async () => {
    let best = 0;
    let most = -1;
    for (const [i, m] of ec.members.entries()) {
      if (m.pid === null) continue;
      const out = await cl.lab.must(nsOf(m), ["ss", "-Htn", "state", "established", "sport", "= :2379"]);
      const n = out.split("\n").filter((l) => /198\.18\.0\.\d+:/.test(l)).length;
      if (n > most) {
        most = n;
        best = i;
      }
    }
    return { index: best, agentConnections: most };
  };

  test("the leader killed: 0 lost, agents healthy, renewals go on under the new leader", async () => {
    const leader = await until(() => ec.leader().then((l) => l ?? undefined), "an etcd leader", 20_000);
    const before = await metrics();
    const mon = await TrafficMonitor.start(cl.lab, cl.nodes);
    const { value, unhealthy } = await watchingHealth(async () => {
      await ec.members[leader]!.stop("SIGKILL");
      const seen = await probeSeen();
      const newLeader = await until(() => ec.leader().then((l) => l ?? undefined), "a new leader", 20_000);
      await everyAgentRenews(before);
      return { ...seen, newLeader };
    });
    await ec.members[leader]!.start();
    await Bun.sleep(500);
    const renewals = await renewalSummary(before);
    await judge("etcd cluster: leader killed", REGISTRY, await mon.stop(), value.writeMs + value.seenMs, {
      killed: `m${leader + 1}`,
      writeMs: value.writeMs,
      seenMs: value.seenMs,
      newLeader: `m${value.newLeader + 1}`,
      renewals,
      unhealthy,
    });
    expect(value.newLeader).not.toBe(leader);
    expect(unhealthy).toEqual([]);
    for (const r of renewals) expect(r).toEqual({ ...r, reacquired: 0 });
  }, 120_000);

  test("a follower killed: 0 lost, agents healthy", async () => {
    const leader = await until(() => ec.leader().then((l) => l ?? undefined), "an etcd leader", 20_000);
    const follower = ec.members.findIndex((_, i) => i !== leader);
    const before = await metrics();
    const mon = await TrafficMonitor.start(cl.lab, cl.nodes);
    const { value, unhealthy } = await watchingHealth(async () => {
      await ec.members[follower]!.stop("SIGKILL");
      const seen = await probeSeen();
      await everyAgentRenews(before);
      return seen;
    });
    await ec.members[follower]!.start();
    await Bun.sleep(500);
    const renewals = await renewalSummary(before);
    await judge("etcd cluster: follower killed", REGISTRY, await mon.stop(), value.writeMs + value.seenMs, {
      killed: `m${follower + 1}`,
      ...value,
      renewals,
      unhealthy,
    });
    expect(unhealthy).toEqual([]);
    for (const r of renewals) expect(r).toEqual({ ...r, reacquired: 0 });
  }, 120_000);

  test(
    `quorum lost for ${QUORUM_LOSS_MS / 1000} s, then restored: 0 lost, agents healthy and degraded meanwhile, changes seen`,
    async () => {
      const down = [0, 1];
      const before = await metrics();
      const mon = await TrafficMonitor.start(cl.lab, cl.nodes);
      const { value, unhealthy } = await watchingHealth(async () => {
        const t0 = Date.now();
        for (const i of down) await ec.members[i]!.stop("SIGKILL");
        // every agent notices that the registry has no quorum (its member has no leader)
        const degraded = await until(
          async () => {
            const h = await health();
            return h.every((x) => x.registry === "degraded") ? Date.now() - t0 : undefined;
          },
          "every agent to report the registry degraded",
          QUORUM_LOSS_MS,
        ).catch(() => null);
        // judged at the end of the outage: in its first seconds the member left still
        // believes it has a leader (etcd's election timeout) and may accept a watch
        await Bun.sleep(Math.max(0, QUORUM_LOSS_MS - 1000 - (Date.now() - t0)));
        const during = await health();
        await Bun.sleep(Math.max(0, QUORUM_LOSS_MS - (Date.now() - t0)));
        await Promise.all(down.map((i) => ec.members[i]!.start()));
        const seen = await probeSeen();
        await everyAgentRenews(await metrics());
        return { degradedAfterMs: degraded, during, ...seen };
      });
      await Bun.sleep(500);
      const renewals = await renewalSummary(before);
      await judge(
        `etcd cluster: quorum lost ${QUORUM_LOSS_MS / 1000} s, then restored`,
        REGISTRY,
        await mon.stop(),
        value.writeMs + value.seenMs,
        {
          outageMs: QUORUM_LOSS_MS,
          writeMs: value.writeMs,
          seenMs: value.seenMs,
          degradedAfterMs: value.degradedAfterMs,
          agentsDuringOutage: value.during,
          renewals,
          unhealthy,
        },
      );
      expect(unhealthy).toEqual([]);
      expect(value.during).toEqual(cl.nodes.map(() => ({ healthz: 200, registry: "degraded" })));
      for (const r of renewals) expect(r).toEqual({ ...r, reacquired: 0 });
    },
    120_000 + QUORUM_LOSS_MS,
  );

  test(
    `one member partitioned from the others by nft for ${PARTITION_MS / 1000} s: 0 lost, agents healthy, changes seen`,
    async () => {
      const { index: cut, agentConnections } = await busiestMember();
      const ns = nsOf(ec.members[cut]!);
      const others = ec.members.filter((_, i) => i !== cut).map((m) => new URL(m.endpoint).hostname);
      const before = await metrics();
      const mon = await TrafficMonitor.start(cl.lab, cl.nodes);
      const { value, unhealthy } = await watchingHealth(async () => {
        const t0 = Date.now();
        await cl.lab.must(ns, ["nft", "add", "table", "inet", "faultpart"]);
        try {
          for (const hook of ["input", "output"]) {
            await cl.lab.must(ns, [
              "nft",
              `add chain inet faultpart ${hook} { type filter hook ${hook} priority 0 ; policy accept ; }`,
            ]);
            const dir = hook === "input" ? "saddr" : "daddr";
            await cl.lab.must(ns, [
              "nft",
              `add rule inet faultpart ${hook} ip ${dir} { ${others.join(", ")} } drop`,
            ]);
          }
          // a change made on the majority side reaches every agent, also those on the cut member
          const seen = await probeSeen();
          await everyAgentRenews(before);
          await Bun.sleep(Math.max(0, PARTITION_MS - (Date.now() - t0)));
          return seen;
        } finally {
          await cl.lab.must(ns, ["nft", "delete", "table", "inet", "faultpart"]);
        }
      });
      const healed = await probeSeen();
      await Bun.sleep(500);
      const renewals = await renewalSummary(before);
      const r = await mon.stop();
      await judge("etcd cluster: one member partitioned", REGISTRY, r, value.writeMs + value.seenMs, {
        partitioned: `m${cut + 1}`,
        agentConnectionsToIt: agentConnections,
        partitionMs: PARTITION_MS,
        ...value,
        afterHeal: healed,
        renewals,
        unhealthy,
      });
      expect(unhealthy).toEqual([]);
      for (const r of renewals) expect(r).toEqual({ ...r, reacquired: 0 });
    },
    120_000 + PARTITION_MS,
  );

  test("a member replaced (member remove, member add): 0 lost, agents healthy, changes seen", async () => {
    const { index: gone, agentConnections } = await busiestMember();
    const host = `198.18.254.${MEMBERS + 1}`;
    const ns = await cl.lab.addHost(`etcd${MEMBERS + 1}`, host);
    const before = await metrics();
    const mon = await TrafficMonitor.start(cl.lab, cl.nodes);
    const { value, unhealthy } = await watchingHealth(async () => {
      const removed = new URL(ec.members[gone]!.endpoint).hostname;
      await ec.replace(gone, { netns: ns, host });
      const seen = await probeSeen();
      await everyAgentRenews(before);
      const list = await ec.etcdctl(["member", "list"]);
      return { ...seen, removed, list };
    });
    await Bun.sleep(500);
    const renewals = await renewalSummary(before);
    await judge("etcd cluster: member replaced", REGISTRY, await mon.stop(), value.writeMs + value.seenMs, {
      removed: value.removed,
      writeMs: value.writeMs,
      seenMs: value.seenMs,
      agentConnectionsToIt: agentConnections,
      added: host,
      renewals,
      unhealthy,
    });
    expect(unhealthy).toEqual([]);
    expect(value.list).toContain(`http://${host}:2380`);
    expect(value.list).not.toContain(`http://${value.removed}:2380`);
    for (const r of renewals) expect(r).toEqual({ ...r, reacquired: 0 });
  }, 120_000);
});
