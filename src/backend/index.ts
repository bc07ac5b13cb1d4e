/**
 * Backend factory: the name an operator picks → its implementation. Heavy backends are
 * loaded on demand so `alloc` never touches libbpf.
 */
import type { BackendName, NetworkConfig } from "../config/network.ts";
import { createAllocBackend } from "./alloc.ts";
import type { Backend, BackendContext } from "./backend.ts";

/** Why a backend cannot run this network config, or null: one line for the operator. */
export function backendRefusal(name: BackendName, config: NetworkConfig): string | null {
  if (name === "ebpf-vxlan" && (config.ipv6 ?? null) !== null)
    return "ebpf-vxlan carries IPv4 only in this version; use vxlan or host-gw for dual stack";
  return null;
}

export async function createBackend(name: BackendName, ctx: BackendContext): Promise<Backend> {
  const refusal = backendRefusal(name, ctx.config);
  if (refusal) throw new Error(refusal);
  switch (name) {
    case "alloc":
      return createAllocBackend(ctx);
    case "vxlan":
      return (await import("./vxlan/index.ts")).createVxlanBackend(ctx);
    case "host-gw":
      return (await import("./host-gw/index.ts")).createHostGwBackend(ctx);
    case "ebpf-vxlan":
      return (await import("./ebpf-vxlan/index.ts")).createEbpfVxlanBackend(ctx);
  }
}
