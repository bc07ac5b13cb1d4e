/**
 * What a node remembers about its lease across restarts and reboots: the subnet in its
 * subnet.env (in /run: gone after a reboot) and its state file
 * `<state-dir>/<node-name>.lease` (on disk: survives it). The state file holds one
 * subnet key ("10.244.3.0-24") and is rewritten atomically whenever a lease is taken.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type Cidr, cidrToKey } from "../config/cidr.ts";
import { type Cidr6, cidr6Equals } from "../config/cidr6.ts";
import type { SubnetEnv } from "../config/subnet-env.ts";
import { parseSubnetKey, subnetKey } from "../config/subnet-key.ts";
import { writeFileAtomic } from "../files.ts";

export interface NodeMemory {
  /** The subnet to ask for first when no lease carries our PublicIP: the one we last held. */
  readonly previous: Cidr | null;
  /** Dual stack: the IPv6 subnet held with `previous`, asked for with it. */
  readonly previous6?: Cidr6 | null;
  /**
   * Subnet keys this node knows it held, each also by its IPv4 part alone ("10.244.3.0-24"):
   * a lease that carries our PublicIP but is not among them may belong to another live
   * node with the same PublicIP: it is refused.
   */
  readonly owned: ReadonlySet<string>;
}

export function stateFilePath(stateDir: string, nodeName: string): string {
  return join(stateDir, `${nodeName}.lease`);
}

/** The subnet key the state file names, or null when it is absent, empty or not a subnet key. */
export function readStateFile(path: string): string | null {
  if (!existsSync(path)) return null;
  const key = readFileSync(path, "utf8").trim();
  // parseSubnetKey takes only flannel's exact text, so the key read is the key written
  return parseSubnetKey(key) ? key : null;
}

/** Records that this node holds `key` (atomically: a crash never leaves half a key). */
export function writeStateFile(path: string, key: string): void {
  writeFileAtomic(path, `${key}\n`);
}

/**
 * Puts subnet.env and the state file together. subnet.env wins for `previous` when it
 * belongs to this network (it is what pods use now); the state file is the memory that
 * survives a reboot. `network6` is the IPv6Network of a dual-stack config: subnet.env's
 * IPv6 subnet counts only when it belongs to it.
 */
export function nodeMemory(
  env: SubnetEnv | null,
  stateKey: string | null,
  network: Cidr,
  network6: Cidr6 | null = null,
): NodeMemory {
  const owned = new Set<string>();
  const state = stateKey ? parseSubnetKey(stateKey) : null;
  if (env) {
    owned.add(cidrToKey(env.subnet));
    if (env.subnet6) owned.add(subnetKey(env.subnet, env.subnet6));
  }
  if (stateKey && state) owned.add(stateKey).add(cidrToKey(state.v4));
  const fromEnv = env && env.network.ip === network.ip && env.network.len === network.len ? env : null;
  if (fromEnv) {
    const sameV6 = network6 !== null && fromEnv.network6 != null && cidr6Equals(fromEnv.network6, network6);
    return { previous: fromEnv.subnet, previous6: sameV6 ? (fromEnv.subnet6 ?? null) : null, owned };
  }
  return { previous: state?.v4 ?? null, previous6: state?.v6 ?? null, owned };
}

/** Does this node's memory say it held `lease` (by its key, or by its IPv4 subnet)? */
export function remembers(memory: NodeMemory, lease: { key: string; subnet: Cidr }): boolean {
  return memory.owned.has(lease.key) || memory.owned.has(cidrToKey(lease.subnet));
}
