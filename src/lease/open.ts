/**
 * Opens the lease source an agent's options ask for: a registry (sqlite:PATH, or etcd with
 * --etcd-endpoints), or the Kubernetes API with --kube-subnet-mgr — imported only then, so
 * registry users never load the Kubernetes client.
 */
import type { AgentOptions, RegistryOptions } from "../config/options.ts";
import type { Logger } from "../log.ts";
import { openRegistry } from "../registry/index.ts";
import { createRegistryLeaseSource } from "./registry-source.ts";
import type { LeaseSource } from "./source.ts";

export interface LeaseSourceOptions {
  readonly registry: RegistryOptions;
  readonly kube: AgentOptions["kube"];
  /** Our Node's name with --kube-subnet-mgr. */
  readonly nodeName: string;
  readonly netConfigPath: string | null;
  readonly leaseTtlMs: number;
  /** Where the node records its lease (named in refusals). */
  readonly stateFile: string;
}

export async function openLeaseSource(o: LeaseSourceOptions, log: Logger): Promise<LeaseSource> {
  if (o.kube) {
    const { KubeSource } = await import("./kube-source.ts");
    if (!o.netConfigPath) throw new Error("--kube-subnet-mgr needs --net-config-path (it has a default)");
    return new KubeSource({ kube: o.kube, nodeName: o.nodeName, netConfigPath: o.netConfigPath, log });
  }
  const registry = await openRegistry(o.registry, log);
  return createRegistryLeaseSource({
    registry,
    ttlMs: o.leaseTtlMs,
    netConfigPath: o.netConfigPath,
    stateFile: o.stateFile,
    log,
  });
}
