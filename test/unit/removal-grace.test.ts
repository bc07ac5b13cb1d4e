/**
 * The removal grace, on a clock the test gives: a vanished remote lease stays
 * programmed until its grace ends, then goes; one that comes back is forgotten (a
 * later removal gets a whole grace); adds, updates and our own subnet are never held;
 * each held lease ends at its own time. No timers: `now` is an argument.
 */
import { describe, expect, test } from "bun:test";
import { cidrToKey, parseCidr, parseIp4 } from "../../src/config/cidr.ts";
import type { Lease } from "../../src/lease/lease.ts";
import { emptyDiff } from "../../src/lease/reconcile.ts";
import { RemovalGrace } from "../../src/lease/removal-grace.ts";

function lease(subnet: string, publicIp: string): Lease {
  const sn = parseCidr(subnet)!;
  return {
    subnet: sn,
    key: cidrToKey(sn),
    attrs: {
      publicIp: parseIp4(publicIp)!,
      backendType: "vxlan",
      vxlan: { VNI: 1, VtepMAC: "aa:bb:cc:00:00:01" },
    },
    expiresAt: null,
    revision: 1,
  };
}

const a = lease("198.19.1.0/24", "198.18.0.1");
const b = lease("198.19.2.0/24", "198.18.0.2");
const own = lease("198.19.4.0/24", "198.18.0.4");
const removing = (...l: Lease[]) => ({ add: [], update: [], remove: l });

describe("removal grace", () => {
  test("a vanished remote lease stays programmed until its grace ends, then goes", () => {
    const g = new RemovalGrace(3000);
    let r = g.defer(removing(a), null, 1000);
    expect(r).toEqual({ diff: emptyDiff, nextAt: 4000, newlyHeld: [a.key] });
    // asked again before the end: still held, same deadline (not extended), not new
    r = g.defer(removing(a), null, 3999);
    expect(r).toEqual({ diff: emptyDiff, nextAt: 4000, newlyHeld: [] });
    r = g.defer(removing(a), null, 4000);
    expect(r).toEqual({ diff: removing(a), nextAt: null, newlyHeld: [] });
    expect(g.held.size).toBe(0);
  });

  test("a lease that comes back is forgotten: a later removal gets a whole grace", () => {
    const g = new RemovalGrace(3000);
    g.defer(removing(a), null, 0);
    // re-acquired: no longer removed
    expect(g.defer(emptyDiff, null, 500).nextAt).toBeNull();
    expect(g.held.size).toBe(0);
    expect(g.defer(removing(a), null, 2900).nextAt).toBe(5900);
  });

  test("adds, updates and our own subnet are never held; a grace of 0 holds nothing", () => {
    const d = { add: [b], update: [a], remove: [own] };
    expect(new RemovalGrace(3000).defer(d, own.key, 0)).toEqual({ diff: d, nextAt: null, newlyHeld: [] });
    expect(new RemovalGrace(0).defer(removing(a, b), null, 0).diff.remove).toEqual([a, b]);
  });

  test("each held lease ends at its own time", () => {
    const g = new RemovalGrace(3000);
    g.defer(removing(a), null, 0);
    const r = g.defer(removing(a, b), null, 1000);
    expect(r.nextAt).toBe(3000);
    expect(r.newlyHeld).toEqual([b.key]);
    expect(g.defer(removing(a, b), null, 3000)).toEqual({ diff: removing(a), nextAt: 4000, newlyHeld: [] });
  });
});
