/**
 * Faults on our own lease: deleted by hand (the agent must notice and re-acquire —
 * ideally the same subnet — or stop loudly; it must never keep forwarding for a subnet it
 * no longer holds); a second agent claiming the same PublicIP; a tight --lease-ttl with
 * renewals under load. Loss and convergence are measured and recorded.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { formatCidr } from "../../src/config/cidr.ts";
import { parseSubnetEnv } from "../../src/config/subnet-env.ts";
import type { Cluster, ClusterNode } from "../helpers/cluster.ts";
import { until } from "../helpers/netns.ts";
import { isRoot, startAgent, status } from "../helpers/tartan.ts";
import { summary, TrafficMonitor } from "../helpers/traffic-monitor.ts";
import { BACKEND, backendAvailable, faultCluster, record, SOAK, timed } from "./report.ts";

const REGISTRIES: ("sqlite" | "etcd")[] = ["sqlite", "etcd"];
const TTL_RUN_MS = SOAK ? 120_000 : 15_000;

const subnetOf = (n: ClusterNode) => formatCidr(parseSubnetEnv(readFileSync(n.subnetFile, "utf8")).subnet);
const keyOf = (cidr: string) => cidr.replace("/", "-");

/**
 * How long a peer's datapath had no route to `key` after `since` (ms), from the peer's
 * "programmed leases" lines (they list the subnets of small changes: -removed, +added,
 * ~updated; each logged when the apply completed). 0 when it was never removed; until
 * `end` when it was removed and not put back.
 */
function routeGoneMs(log: string, key: string, since: number, end: number): number {
  let gone: number | null = null;
  let total = 0;
  for (const line of log.split("\n")) {
    if (!line.includes('msg="programmed leases"')) continue;
    const t = Date.parse(/^time=(\S+)/.exec(line)?.[1] ?? "");
    // logfmt: quoted when it holds several (space-separated) subnets
    const m = / subnets=(?:"([^"]*)"|(\S+))/.exec(line);
    const subnets = (m?.[1] ?? m?.[2])?.split(" ") ?? [];
    if (!(t >= since)) continue;
    if (gone === null && subnets.includes(`-${key}`)) gone = t;
    else if (gone !== null && (subnets.includes(`+${key}`) || subnets.includes(`~${key}`))) {
      total += t - gone;
      gone = null;
    }
  }
  return gone === null ? total : total + (end - gone);
}

for (const registry of REGISTRIES)
  describe.skipIf(!isRoot() || !backendAvailable())(`faults: own lease (${BACKEND}, ${registry})`, () => {
    let cl: Cluster;
    beforeAll(async () => {
      cl = await faultCluster(registry, { tag: "fl" });
    }, 120_000);
    afterAll(async () => {
      await cl?.close();
    });

    test("our lease deleted by hand: the agent re-acquires it (same subnet) and traffic converges", async () => {
      const n = cl.nodes[1]!;
      const before = subnetOf(n);
      const mon = await TrafficMonitor.start(cl.lab, cl.nodes);
      const deletedAt = Date.now();
      await cl.deleteLease(keyOf(before));
      const { ms } = await timed(async () => {
        await until(
          async () => {
            if (n.agent.proc.exitCode !== null) return true; // stopped: judged below
            const s = await status(cl.lab, n.ns);
            return s.lease !== null;
          },
          "the agent to hold a lease again (or to stop)",
          60_000,
        );
        if (n.agent.proc.exitCode === null) await cl.waitConverged(60_000);
      });
      await Bun.sleep(1000);
      const r = await mon.stop();
      const log = await cl.lab.log(n.agent);
      const stopped = n.agent.proc.exitCode !== null;
      const after = stopped ? null : (await status(cl.lab, n.ns)).lease?.subnet;
      // where the agent runs on, the vxlan device carries only the subnet it holds
      const addrs = stopped ? "" : await cl.lab.must(n.ns, ["ip", "-4", "-o", "addr", "show"]);
      const noticed = /lease (is gone|was removed)/.test(log);
      const sameSubnet = after === before;
      // the time each peer spent without a route to the node (the other nodes' view)
      const end = Date.now();
      const peers = cl.nodes.filter((p) => p !== n);
      const routeGone = await Promise.all(
        peers.map(async (p) => routeGoneMs(await cl.lab.log(p.agent), keyOf(before), deletedAt, end)),
      );
      const zeroLoss = r.lost === 0 && r.tcpIntact && routeGone.every((g) => g === 0);
      const ok = noticed && (stopped ? n.agent.proc.exitCode !== 0 : sameSubnet && zeroLoss);
      record({
        fault: "own lease deleted by hand",
        backend: BACKEND,
        registry,
        lost: r.lost,
        sent: r.sent,
        convergeMs: ms,
        result: ok
          ? `pass (${stopped ? "agent stopped loudly" : "re-acquired the same subnet"})`
          : `fail: noticed=${noticed} stopped=${stopped} before=${before} after=${after}; ${summary(r)}`,
        detail: {
          routeGoneMs: routeGone,
          longestGapMs: r.longestGapMs,
          longestSilenceMs: r.longestSilenceMs,
          tcpBytes: r.tcp.received,
          tcpIntact: r.tcpIntact,
        },
      });
      expect(noticed).toBe(true);
      if (stopped) expect(n.agent.proc.exitCode).not.toBe(0);
      else {
        // peers keep the route through the re-acquisition (the removal grace): nothing lost
        expect({ lost: r.lost, tcp: r.tcpIntact, routeGone, summary: summary(r) }).toEqual({
          lost: 0,
          tcp: true,
          routeGone: peers.map(() => 0),
          summary: summary(r),
        });
        expect(after).toBe(before);
        // never forwarding for a subnet it does not hold: its subnet.env and device agree with the lease
        expect(subnetOf(n)).toBe(after!);
        expect(addrs).toContain(`${after!.split("/")[0]}/32`);
      }
      console.log(`[fault] lease deleted: ${summary(r)}`);
    }, 120_000);

    test("a second agent claiming the same PublicIP: the first keeps its subnet and traffic; the second holds no lease and reports it", async () => {
      const victim = cl.nodes[0]!;
      const victimSubnet = subnetOf(victim);
      const victimMac = (await status(cl.lab, cl.nodes[1]!.ns)).leases.find(
        (l) => l.subnet === victimSubnet,
      )?.vtepMac;
      const mon = await TrafficMonitor.start(cl.lab, cl.nodes);
      const node = await cl.lab.addNode();
      const dir = join(cl.lab.dir, "impostor");
      mkdirSync(dir, { recursive: true });
      const bpffs = `/sys/fs/bpf/tartan-test-${cl.lab.prefix}-impostor`;
      cl.lab.bpffsDirs.push(bpffs);
      const imp = startAgent(cl.lab, {
        node,
        name: "impostor",
        registry: cl.registryFlag,
        backend: BACKEND,
        subnetFile: join(dir, "subnet.env"),
        extra: [`--public-ip=${victim.ip}`, `--bpffs=${bpffs}`],
      });
      // the second agent takes a lease, reports an error, or stops
      const { ms } = await timed(() =>
        until(
          async () => {
            if (imp.proc.exitCode !== null) return true;
            if (/level=error/.test(await cl.lab.log(imp))) return true;
            const s = await status(cl.lab, node.ns).catch(() => null);
            return s !== null && s.lease !== null;
          },
          "the second agent to take a lease or stop",
          30_000,
        ).catch(() => true),
      );
      // give it a few renew/watch cycles to do damage
      await Bun.sleep(3000);
      const r = await mon.stop();
      const impStatus = imp.proc.exitCode === null ? await status(cl.lab, node.ns).catch(() => null) : null;
      const impSubnet = impStatus?.lease?.subnet ?? null;
      const seen = (await status(cl.lab, cl.nodes[1]!.ns)).leases.find((l) => l.subnet === victimSubnet);
      const log = await cl.lab.log(imp);
      const exited = imp.proc.exitCode;
      await cl.lab.stop(imp, "SIGKILL");
      // a second agent that took a subnet of its own leaves it behind: remove it
      if (impSubnet && impSubnet !== victimSubnet) await cl.deleteLease(keyOf(impSubnet));
      const shared = impSubnet === victimSubnet;
      // reported: it exited non-zero, or said so at error level
      const loud = (exited !== null && exited !== 0) || /level=error/.test(log);
      // any lease it holds is wrong: its own subnet would be routed to node 1's PublicIP too
      const ok =
        r.lost === 0 &&
        impSubnet === null &&
        loud &&
        subnetOf(victim) === victimSubnet &&
        seen?.vtepMac === victimMac;
      record({
        fault: "two agents claim the same PublicIP",
        backend: BACKEND,
        registry,
        lost: r.lost,
        sent: r.sent,
        convergeMs: ms,
        result: ok
          ? "pass (the second agent held no lease and reported it)"
          : `fail: second agent holds ${impSubnet ?? "nothing"} (victim ${victimSubnet}), reported=${loud}; ${summary(r)}`,
        detail: { impostorExit: exited, impostorSubnet: impSubnet, reported: loud },
      });
      expect({ lost: r.lost, victimKeeps: subnetOf(victim), macSeen: seen?.vtepMac }).toEqual({
        lost: 0,
        victimKeeps: victimSubnet,
        macSeen: victimMac,
      });
      // two agents must never both hold one subnet; the second holds none, and says why
      expect({ shared, impostorSubnet: impSubnet, reported: loud }).toEqual({
        shared: false,
        impostorSubnet: null,
        reported: true,
      });
      await cl.waitConverged(30_000);
    }, 120_000);
  });

describe.skipIf(!isRoot() || !backendAvailable())(
  `faults: tight --lease-ttl=6s under load (${BACKEND})`,
  () => {
    let cl: Cluster;
    const registry = "sqlite" as const;
    beforeAll(async () => {
      cl = await faultCluster(registry, { tag: "ft", agentFlags: ["--lease-ttl=6s"] });
    }, 120_000);
    afterAll(async () => {
      await cl?.close();
    });

    test(
      `renewals every ~3 s for ${TTL_RUN_MS / 1000} s with traffic: no lease lost, 0 packets lost`,
      async () => {
        const before = await Promise.all(cl.nodes.map((n) => status(cl.lab, n.ns)));
        const mon = await TrafficMonitor.start(cl.lab, cl.nodes, { tcpRate: 20_000_000 });
        // the fault is time itself: several TTLs pass under load
        await Bun.sleep(TTL_RUN_MS);
        const r = await mon.stop();
        const after = await Promise.all(cl.nodes.map((n) => status(cl.lab, n.ns)));
        const per = after.map((s, i) => ({
          node: s.node,
          renewals: s.metrics.renewals - before[i]!.metrics.renewals,
          failures: s.metrics.renewalFailures - before[i]!.metrics.renewalFailures,
          reacquired: s.metrics.acquisitions - before[i]!.metrics.acquisitions,
          held: s.lease !== null,
        }));
        const minRenewals = Math.floor(TTL_RUN_MS / 6000);
        const ok =
          r.lost === 0 &&
          r.tcpIntact &&
          per.every((p) => p.held && p.failures === 0 && p.reacquired === 0 && p.renewals >= minRenewals);
        record({
          fault: "tight --lease-ttl=6s, renewals under load",
          backend: BACKEND,
          registry,
          lost: r.lost,
          sent: r.sent,
          convergeMs: null,
          result: ok ? "pass" : `fail: ${JSON.stringify(per)}; ${summary(r)}`,
          detail: { runMs: TTL_RUN_MS, renewals: per.map((p) => p.renewals), tcpBytes: r.tcp.received },
        });
        expect(r.lost).toBe(0);
        expect(r.tcpIntact).toBe(true);
        for (const p of per)
          expect(p).toEqual({ ...p, held: true, failures: 0, reacquired: 0, renewals: expect.any(Number) });
        for (const p of per) expect(p.renewals).toBeGreaterThanOrEqual(minRenewals);
      },
      60_000 + TTL_RUN_MS,
    );
  },
);
