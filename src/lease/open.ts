/**
 * Opens the lease source an agent's options ask for. Today: a registry (sqlite:PATH,
 * or etcd with --etcd-endpoints). The Kubernetes source (--kube-subnet-mgr) plugs in here.
 */
import type { RegistryOptions } from "../config/options.ts";
import type { Logger } from "../log.ts";
import { openRegistry } from "../registry/index.ts";
import { createRegistryLeaseSource } from "./registry-source.ts";
import type { LeaseSource } from "./source.ts";

export interface LeaseSourceOptions {
  readonly registry: RegistryOptions;
  readonly netConfigPath: string | null;
  readonly leaseTtlMs: number;
  /** Where the node records its lease (named in refusals). */
  readonly stateFile: string;
}

export async function openLeaseSource(o: LeaseSourceOptions, log: Logger): Promise<LeaseSource> {
  const registry = await openRegistry(o.registry, log);
  return createRegistryLeaseSource({
    registry,
    ttlMs: o.leaseTtlMs,
    netConfigPath: o.netConfigPath,
    stateFile: o.stateFile,
    log,
  });
}
