/** Opens the registry an operator chose: sqlite:PATH (embedded) or etcd (--etcd-endpoints). */
import type { RegistryOptions } from "../config/options.ts";
import type { Logger } from "../log.ts";
import type { Registry } from "./registry.ts";
import { SqliteRegistry } from "./sqlite.ts";

export async function openRegistry(opts: RegistryOptions, log: Logger): Promise<Registry> {
  if (opts.kind === "sqlite") return SqliteRegistry.open({ path: opts.path, log });
  const { createEtcdRegistry } = await import("./etcd.ts");
  return createEtcdRegistry({ ...opts, log });
}
