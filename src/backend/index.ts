/**
 * Backend factory: the name an operator picks → its implementation. Heavy backends are
 * loaded on demand so `alloc` never touches libbpf.
 */
import type { BackendName } from "../config/network.ts";
import { createAllocBackend } from "./alloc.ts";
import type { Backend, BackendContext } from "./backend.ts";

export async function createBackend(name: BackendName, ctx: BackendContext): Promise<Backend> {
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
