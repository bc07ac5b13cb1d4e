/**
 * A source that answers "not yet" (SourceWaitingError: our Node has no podCIDR) is waited
 * for, not failed: the keeper says why once in the log, the source stays "ok" (not
 * degraded), /readyz names the reason first, and the lease is taken once the source gives it.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LeaseKeeper } from "../../src/agent/lease-keeper.ts";
import { agentStatus } from "../../src/agent/snapshot.ts";
import { SourceHealth } from "../../src/agent/source-health.ts";
import { cidrToKey, parseCidr, parseIp4 } from "../../src/config/cidr.ts";
import { parseNetworkConfig } from "../../src/config/network.ts";
import type { Lease } from "../../src/lease/lease.ts";
import { type LeaseSource, SourceWaitingError } from "../../src/lease/source.ts";
import { createLogger } from "../../src/log.ts";
import { newMetrics } from "../../src/status/status.ts";
import { until } from "../helpers/netns.ts";

const cfg = parseNetworkConfig('{"Network":"198.19.0.0/16"}');
const WHY = "Node n1 has no podCIDR yet; waiting for kube-controller-manager to assign one";
const attrs = { publicIp: parseIp4("198.18.0.1")!, backendType: "vxlan", vxlan: null };

describe("a source that says not yet", () => {
  test("the keeper waits, logs the reason once, keeps the source ok, and /readyz names it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tartan-waiting-"));
    const lines: string[] = [];
    const log = createLogger({ write: (l) => lines.push(l) });
    const metrics = newMetrics();
    const health = new SourceHealth("kubernetes:https://x (Node n1)", log, metrics);
    let calls = 0;
    let give = false;
    const sn = parseCidr("198.19.1.0/24")!;
    const lease: Lease = { subnet: sn, key: cidrToKey(sn), attrs, expiresAt: null, revision: 1 };
    const source = {
      description: health.description,
      async acquire() {
        calls++;
        if (!give) throw new SourceWaitingError(WHY);
        return lease;
      },
    } as unknown as LeaseSource;
    const keeper = new LeaseKeeper({
      source,
      config: cfg,
      attrs,
      ttlMs: 60_000,
      renewMarginMs: 60_000,
      memory: { previous: null, owned: new Set() },
      stateFile: join(dir, "n1.lease"),
      log,
      metrics,
      health,
      onLease: () => {},
    });
    try {
      const got = keeper.acquire();
      await until(() => health.waitingFor !== null, "the keeper to wait");
      expect(health.state).toBe("ok");
      expect(health.waitingFor).toBe(WHY);
      expect(metrics.registryErrors).toBe(0);
      const ready = agentStatus(
        {
          node: "n1",
          version: "test",
          backend: "vxlan",
          startedAt: new Date(),
          phase: "acquiring",
          stopping: false,
          stalledMs: 0,
          config: cfg,
          source: {
            description: health.description,
            state: health.state,
            lastError: null,
            waiting: health.waitingFor,
          },
          revision: 0,
          own: null,
          renewAt: null,
          subnetFile: "/run/flannel/subnet.env",
          subnetWritten: false,
          localSet: false,
          leases: null,
          programmed: null,
          synced: false,
          datapath: null,
          counters: {},
          metrics,
        },
        false,
      ).ready;
      expect(ready.ok).toBe(false);
      expect(ready.reasons[0]).toBe(WHY);
      give = true;
      expect(await got).toBe(lease);
      expect(calls).toBe(2); // asked again after its wait
      expect(health.waitingFor).toBeNull();
      expect(lines.filter((l) => l.includes("has no podCIDR yet"))).toHaveLength(1);
      expect(lines.filter((l) => l.includes("level=warn") && !l.includes("has no podCIDR"))).toEqual([]);
    } finally {
      keeper.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
