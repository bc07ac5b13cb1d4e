/**
 * The judging half of `tartan doctor`: one small pure function per check, from the
 * gathered facts to a verdict an operator can act on — a status, a one-line finding
 * naming the exact object (device, address, file, sysctl, rule), why it matters, and
 * the command or flag that fixes it. No I/O: every check is unit-tested from facts.
 * The checks live by concern under checks/; this module lists them in report order.
 */

import type { Check } from "./checks/common.ts";
import { checkBridge, checkChecksumOffload, checkDatapath, checkMtu } from "./checks/datapath.ts";
import {
  checkBrNetfilter,
  checkForwardPolicy,
  checkIpForward,
  checkMasquerade,
  checkRpFilter,
} from "./checks/host.ts";
import { checkIpv6Datapath, checkIpv6Forward, checkIpv6Masquerade, checkIpv6Routes } from "./checks/ipv6.ts";
import { checkKubeAnnotations, checkKubeNetworkUnavailable, checkKubePodCidr } from "./checks/kube.ts";
import { checkPeers, checkRemoteLeases, checkStaleEntries } from "./checks/leases.ts";
import { checkAgent, checkCniConfig, checkLease, checkRegistry, checkSubnetEnv } from "./checks/node.ts";
import type { Facts } from "./facts.ts";

export * from "./checks/common.ts";
export * from "./checks/datapath.ts";
export * from "./checks/host.ts";
export * from "./checks/ipv6.ts";
export * from "./checks/kube.ts";
export * from "./checks/leases.ts";
export * from "./checks/node.ts";

/** Every check, in report order. */
export const CHECKS: readonly ((f: Facts) => Check)[] = [
  checkAgent,
  checkRegistry,
  checkKubePodCidr,
  checkKubeAnnotations,
  checkKubeNetworkUnavailable,
  checkLease,
  checkSubnetEnv,
  checkBridge,
  checkDatapath,
  checkRemoteLeases,
  checkStaleEntries,
  checkMtu,
  checkIpForward,
  checkRpFilter,
  checkBrNetfilter,
  checkForwardPolicy,
  checkMasquerade,
  checkCniConfig,
  checkChecksumOffload,
  checkPeers,
];

/** Judged only on a --kube-subnet-mgr node. */
const KUBE_CHECKS: ReadonlySet<(f: Facts) => Check> = new Set([
  checkKubePodCidr,
  checkKubeAnnotations,
  checkKubeNetworkUnavailable,
]);

/** A dual-stack node's IPv6 checks, reported before the peers; an IPv4-only node's report has none. */
export const IPV6_CHECKS: readonly ((f: Facts) => Check)[] = [
  checkIpv6Forward,
  checkIpv6Datapath,
  checkIpv6Routes,
  checkIpv6Masquerade,
];

export function judge(f: Facts): Check[] {
  const dual = f.config.ok && (f.config.value.ipv6 ?? null) !== null;
  const all = dual ? [...CHECKS.slice(0, -1), ...IPV6_CHECKS, ...CHECKS.slice(-1)] : CHECKS;
  return all.filter((c) => f.kube !== null || !KUBE_CHECKS.has(c)).map((c) => c(f));
}
