/**
 * What a node remembers about its lease across restarts and reboots: the subnet in its
 * subnet.env (in /run: gone after a reboot) and its state file
 * `<state-dir>/<node-name>.lease` (on disk: survives it). The state file holds one
 * subnet key ("10.244.3.0-24") and is rewritten atomically whenever a lease is taken.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type Cidr, cidrToKey, keyToCidr } from "../config/cidr.ts";
import type { SubnetEnv } from "../config/subnet-env.ts";
import { writeFileAtomic } from "../files.ts";

export interface NodeMemory {
  /** The subnet to ask for first when no lease carries our PublicIP: the one we last held. */
  readonly previous: Cidr | null;
  /**
   * Subnet keys this node knows it held. A lease that carries our PublicIP but is not
   * among them may belong to another live node with the same PublicIP: it is refused.
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
  return keyToCidr(key) ? cidrToKey(keyToCidr(key)!) : null;
}

/** Records that this node holds `key` (atomically: a crash never leaves half a key). */
export function writeStateFile(path: string, key: string): void {
  writeFileAtomic(path, `${key}\n`);
}

/**
 * Puts subnet.env and the state file together. subnet.env wins for `previous` when it
 * belongs to this network (it is what pods use now); the state file is the memory that
 * survives a reboot.
 */
export function nodeMemory(env: SubnetEnv | null, stateKey: string | null, network: Cidr): NodeMemory {
  const owned = new Set<string>();
  if (env) owned.add(cidrToKey(env.subnet));
  if (stateKey) owned.add(stateKey);
  const fromEnv = env && env.network.ip === network.ip && env.network.len === network.len ? env.subnet : null;
  return { previous: fromEnv ?? (stateKey ? keyToCidr(stateKey) : null), owned };
}
