/**
 * flannel's `alloc` backend: hold a lease, program nothing. Useful to reserve subnets
 * and to test the control plane without touching the kernel.
 */
import type { Backend, BackendContext } from "./backend.ts";

export function createAllocBackend(ctx: BackendContext): Backend {
  return {
    name: "alloc",
    prepare: async () => ({
      backendType: "alloc",
      vxlan: null,
      mtu: ctx.config.backend.mtu ?? ctx.extIface.mtu,
    }),
    setLocal: async () => {},
    apply: async () => {},
    health: async () => ({ ok: true }),
    counters: async () => ({}),
    close: async () => {},
    abandon: async () => {},
  };
}
