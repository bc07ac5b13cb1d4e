/**
 * The ebpf-vxlan backend's map planner: for a lease diff and what the subnet and member
 * maps hold, exactly which entries are written and deleted, with member counts right
 * when several subnets share a node, and a full re-apply after adopting a previous
 * run's maps pruning what no lease holds any more. No root: no map is touched.
 */
import { describe, expect, test } from "bun:test";
import { ProgrammedMaps, planLocalEntry, planMapWrites } from "../../src/backend/ebpf-vxlan/map-plan.ts";
import { SUBNET_LOCAL } from "../../src/bpf/abi.ts";
import { cidrToKey, parseCidr, parseIp4 } from "../../src/config/cidr.ts";
import type { Lease } from "../../src/lease/lease.ts";
import type { LeaseDiff } from "../../src/lease/reconcile.ts";

const ip = (s: string) => parseIp4(s)!;
const scope = { vni: 1, subnetLen: 24 };
const NODE_A = "198.18.0.2";
const NODE_B = "198.18.0.3";
const MAC_A = "0a:00:00:00:00:02";
const MAC_B = "0a:00:00:00:00:03";

function lease(subnet: string, node: string, mac: string, vni = 1): Lease {
  const sn = parseCidr(subnet)!;
  return {
    subnet: sn,
    key: cidrToKey(sn),
    attrs: { publicIp: ip(node), backendType: "vxlan", vxlan: { VNI: vni, VtepMAC: mac } },
    expiresAt: null,
    revision: 1,
  };
}
const key = (subnet: string) => ({ prefixLen: 24, addr: parseCidr(subnet)!.ip });
const value = (node: string, mac: string) => ({ nodeIp: ip(node), vtepMac: mac, flags: 0 });
const diff = (d: Partial<LeaseDiff>): LeaseDiff => ({ add: [], update: [], remove: [], ...d });
const NOTHING = { memberWrites: [], subnetWrites: [], subnetDeletes: [], memberDeletes: [], skipped: [] };

/** Plans `d` against `state` and commits it, as the backend does after writing the maps. */
function applyTo(state: ProgrammedMaps, d: Partial<LeaseDiff>) {
  const plan = planMapWrites(state, diff(d), scope);
  state.commit(plan);
  return plan;
}

const A1 = lease("198.19.1.0/24", NODE_A, MAC_A);
const A2 = lease("198.19.2.0/24", NODE_A, MAC_A);
const B3 = lease("198.19.3.0/24", NODE_B, MAC_B);

describe("map planner: adds, updates, removes", () => {
  test("adding leases writes each node as a member and each subnet once", () => {
    const s = new ProgrammedMaps();
    const plan = applyTo(s, { add: [A1, B3] });
    expect(plan).toEqual({
      memberWrites: [
        [ip(NODE_A), 1],
        [ip(NODE_B), 1],
      ],
      subnetWrites: [
        [key("198.19.1.0/24"), value(NODE_A, MAC_A)],
        [key("198.19.3.0/24"), value(NODE_B, MAC_B)],
      ],
      subnetDeletes: [],
      memberDeletes: [],
      skipped: [],
    });
    expect([...s.subnets.keys()]).toEqual([key("198.19.1.0/24").addr, key("198.19.3.0/24").addr]);
    expect([...s.members]).toEqual([
      [ip(NODE_A), 1],
      [ip(NODE_B), 1],
    ]);
  });

  test("adding what the map already holds writes nothing", () => {
    const s = new ProgrammedMaps();
    applyTo(s, { add: [A1] });
    const plan = planMapWrites(s, diff({ add: [A1] }), scope);
    expect(plan).toEqual(NOTHING);
  });

  test("a new VTEP MAC rewrites the subnet entry and leaves the member count alone", () => {
    const s = new ProgrammedMaps();
    applyTo(s, { add: [A1] });
    const plan = applyTo(s, { update: [lease("198.19.1.0/24", NODE_A, "0a:00:00:00:00:99")] });
    expect(plan.subnetWrites).toEqual([[key("198.19.1.0/24"), value(NODE_A, "0a:00:00:00:00:99")]]);
    expect(plan.memberWrites).toEqual([]);
    expect(plan.memberDeletes).toEqual([]);
    expect(s.members.get(ip(NODE_A))).toBe(1);
  });

  test("a new node IP moves the subnet: the new node is a member first, the old one goes last", () => {
    const s = new ProgrammedMaps();
    applyTo(s, { add: [A1] });
    const plan = applyTo(s, { update: [lease("198.19.1.0/24", NODE_B, MAC_B)] });
    expect(plan.memberWrites).toEqual([[ip(NODE_B), 1]]);
    expect(plan.subnetWrites).toEqual([[key("198.19.1.0/24"), value(NODE_B, MAC_B)]]);
    expect(plan.subnetDeletes).toEqual([]);
    expect(plan.memberDeletes).toEqual([ip(NODE_A)]);
    expect([...s.members]).toEqual([[ip(NODE_B), 1]]);
  });

  test("removing a lease deletes its subnet entry and its node's membership", () => {
    const s = new ProgrammedMaps();
    applyTo(s, { add: [A1, B3] });
    const plan = applyTo(s, { remove: [B3] });
    expect(plan.subnetDeletes).toEqual([key("198.19.3.0/24")]);
    expect(plan.memberDeletes).toEqual([ip(NODE_B)]);
    expect(plan.memberWrites).toEqual([]);
    expect([...s.subnets.keys()]).toEqual([key("198.19.1.0/24").addr]);
    expect([...s.members.keys()]).toEqual([ip(NODE_A)]);
  });

  test("removing a lease that was never programmed writes nothing", () => {
    const plan = planMapWrites(new ProgrammedMaps(), diff({ remove: [B3] }), scope);
    expect(plan).toEqual(NOTHING);
  });

  test("a lease of another VNI is skipped with the reason; one that moved to another VNI is removed", () => {
    const s = new ProgrammedMaps();
    applyTo(s, { add: [A1] });
    const other = lease("198.19.1.0/24", NODE_A, MAC_A, 7);
    const plan = applyTo(s, { update: [other] });
    expect(plan.skipped).toEqual([{ lease: other, reason: "VNI 7 differs from ours (1)" }]);
    expect(plan.subnetDeletes).toEqual([key("198.19.1.0/24")]);
    expect(plan.memberDeletes).toEqual([ip(NODE_A)]);
    expect(s.subnets.size).toBe(0);
  });
});

describe("map planner: a member shared by several subnets", () => {
  test("two subnets on one node make one member entry counting 2", () => {
    const s = new ProgrammedMaps();
    const plan = applyTo(s, { add: [A1, A2] });
    expect(plan.memberWrites).toEqual([[ip(NODE_A), 2]]);
    expect(plan.subnetWrites.length).toBe(2);
  });

  test("removing one of them keeps the node a member, counting 1", () => {
    const s = new ProgrammedMaps();
    applyTo(s, { add: [A1, A2] });
    const plan = applyTo(s, { remove: [A1] });
    expect(plan.subnetDeletes).toEqual([key("198.19.1.0/24")]);
    expect(plan.memberWrites).toEqual([[ip(NODE_A), 1]]);
    expect(plan.memberDeletes).toEqual([]);
    expect(s.members.get(ip(NODE_A))).toBe(1);
  });

  test("removing the last one removes the member", () => {
    const s = new ProgrammedMaps();
    applyTo(s, { add: [A1, A2] });
    applyTo(s, { remove: [A1] });
    const plan = applyTo(s, { remove: [A2] });
    expect(plan.memberDeletes).toEqual([ip(NODE_A)]);
    expect(s.members.size).toBe(0);
  });

  test("one of them moving to another node keeps the first node with 1 and adds the other", () => {
    const s = new ProgrammedMaps();
    applyTo(s, { add: [A1, A2] });
    const plan = applyTo(s, { update: [lease("198.19.2.0/24", NODE_B, MAC_B)] });
    expect(plan.memberWrites).toEqual([
      [ip(NODE_A), 1],
      [ip(NODE_B), 1],
    ]);
    expect(plan.memberDeletes).toEqual([]);
  });
});

describe("map planner: adopting a previous run's maps, then a full re-apply", () => {
  const adoptedSubnets = [
    [key("198.19.1.0/24"), value(NODE_A, MAC_A)], // still leased, unchanged
    [key("198.19.2.0/24"), value(NODE_A, "0a:00:00:00:00:77")], // still leased, MAC changed since
    [key("198.19.9.0/24"), value(NODE_B, MAC_B)], // deleted while no agent ran
    [{ prefixLen: 25, addr: ip("198.19.8.0") }, value(NODE_B, MAC_B)], // SubnetLen was 25 then
    [key("198.19.5.0/24"), { nodeIp: ip("198.18.0.1"), vtepMac: MAC_A, flags: SUBNET_LOCAL }],
  ] as const;
  const adoptedMembers = [
    [ip(NODE_A), 2],
    [ip(NODE_B), 1],
  ] as const;

  test("adopting keeps remote entries, hands back the local one and those of another prefix length", () => {
    const s = new ProgrammedMaps();
    const found = s.adopt(adoptedSubnets, adoptedMembers, 24);
    expect(found.stale).toEqual([{ prefixLen: 25, addr: ip("198.19.8.0") }]);
    expect(found.local).toEqual([key("198.19.5.0/24")]);
    expect(s.subnets.size).toBe(3);
    expect(s.pruneDue).toBe(true);
  });

  test("the first apply (every lease as an add) rewrites what changed and prunes what no lease holds", () => {
    const s = new ProgrammedMaps();
    s.adopt(adoptedSubnets, adoptedMembers, 24);
    const plan = applyTo(s, { add: [A1, A2] });
    expect(plan.subnetWrites).toEqual([[key("198.19.2.0/24"), value(NODE_A, MAC_A)]]);
    expect(plan.subnetDeletes).toEqual([key("198.19.9.0/24")]);
    expect(plan.memberWrites).toEqual([]);
    expect(plan.memberDeletes).toEqual([ip(NODE_B)]);
    expect([...s.members]).toEqual([[ip(NODE_A), 2]]);
    expect(s.pruneDue).toBe(false);
    // the next apply prunes nothing: a lease it does not name stays
    expect(planMapWrites(s, diff({ add: [B3] }), scope).subnetDeletes).toEqual([]);
  });

  test("an empty first apply (no leases left) empties both maps", () => {
    const s = new ProgrammedMaps();
    s.adopt(adoptedSubnets, adoptedMembers, 24);
    const plan = applyTo(s, {});
    expect(plan.subnetDeletes.map((k) => k.addr).sort()).toEqual(
      [key("198.19.1.0/24"), key("198.19.2.0/24"), key("198.19.9.0/24")].map((k) => k.addr).sort(),
    );
    expect([...plan.memberDeletes].sort()).toEqual([ip(NODE_A), ip(NODE_B)].sort());
    expect(s.subnets.size + s.members.size).toBe(0);
  });
});

describe("our own subnet's entry", () => {
  const own = { nodeIp: ip("198.18.0.1"), vtepMac: MAC_A };
  test("written flagged local; the subnet held before and adopted local entries that are not ours go", () => {
    const r = planLocalEntry(
      new ProgrammedMaps(),
      parseCidr("198.19.4.0/24"),
      [key("198.19.5.0/24"), key("198.19.6.0/24")],
      parseCidr("198.19.6.0/24")!,
      own,
    );
    expect(r.deletes).toEqual([key("198.19.4.0/24"), key("198.19.5.0/24")]);
    expect(r.write).toEqual([key("198.19.6.0/24"), { ...own, flags: SUBNET_LOCAL }]);
  });
  test("the same subnet again deletes nothing", () => {
    const r = planLocalEntry(
      new ProgrammedMaps(),
      parseCidr("198.19.6.0/24"),
      [],
      parseCidr("198.19.6.0/24")!,
      own,
    );
    expect(r.deletes).toEqual([]);
  });
  test("the subnet held before, already programmed for the node that took it over, is not deleted", () => {
    // our lease was lost; another node took 198.19.4.0/24 and its lease was programmed
    // before we moved to our new subnet: deleting "our old entry" would cut that node off
    const s = new ProgrammedMaps();
    applyTo(s, { add: [lease("198.19.4.0/24", NODE_B, MAC_B)] });
    const r = planLocalEntry(s, parseCidr("198.19.4.0/24"), [], parseCidr("198.19.7.0/24")!, own);
    expect(r.deletes).toEqual([]);
    expect(r.write).toEqual([key("198.19.7.0/24"), { ...own, flags: SUBNET_LOCAL }]);
    // still ours (no remote lease there): it goes
    const alone = planLocalEntry(
      new ProgrammedMaps(),
      parseCidr("198.19.4.0/24"),
      [],
      parseCidr("198.19.7.0/24")!,
      own,
    );
    expect(alone.deletes).toEqual([key("198.19.4.0/24")]);
  });
  test("an adopted local entry since programmed for another node's lease is not deleted either", () => {
    const s = new ProgrammedMaps();
    applyTo(s, { add: [lease("198.19.5.0/24", NODE_A, MAC_A)] });
    const r = planLocalEntry(
      s,
      null,
      [key("198.19.5.0/24"), key("198.19.8.0/24")],
      parseCidr("198.19.7.0/24")!,
      own,
    );
    expect(r.deletes).toEqual([key("198.19.8.0/24")]);
  });
  test("a subnet still programmed for its previous node is taken over: no later removal deletes our entry", () => {
    // node A's lease 198.19.2.0/24 vanished (still programmed, in its removal grace) and we took that subnet
    const s = new ProgrammedMaps();
    applyTo(s, { add: [A1, A2] });
    const r = planLocalEntry(s, null, [], parseCidr("198.19.2.0/24")!, own);
    expect(r.write).toEqual([key("198.19.2.0/24"), { ...own, flags: SUBNET_LOCAL }]);
    expect(r.takeover).toEqual({ nodeIp: ip(NODE_A), members: 1 });
    s.commitLocal(r);
    expect([...s.members]).toEqual([[ip(NODE_A), 1]]);
    // the sync then removes A's lease for our own subnet: the key (our local entry) stays
    expect(applyTo(s, { remove: [A2] })).toEqual(NOTHING);
    // A's last lease gone: A leaves the members as usual
    expect(applyTo(s, { remove: [A1] }).memberDeletes).toEqual([ip(NODE_A)]);
  });
  test("taking over a node's only lease ends its membership; a free subnet takes nothing over", () => {
    const s = new ProgrammedMaps();
    applyTo(s, { add: [B3] });
    const r = planLocalEntry(s, null, [], parseCidr("198.19.3.0/24")!, own);
    expect(r.takeover).toEqual({ nodeIp: ip(NODE_B), members: 0 });
    s.commitLocal(r);
    expect(s.members.size).toBe(0);
    expect(s.subnets.size).toBe(0);
    expect(planLocalEntry(s, null, [], parseCidr("198.19.9.0/24")!, own).takeover).toBeNull();
  });
});
