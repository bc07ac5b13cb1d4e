/** Opens the registry an operator chose: sqlite:PATH (embedded) or etcd (--etcd-endpoints). */
import type { RegistryOptions } from "../config/options.ts";
import type { Logger } from "../log.ts";
import type { Registry } from "./registry.ts";
import { SqliteRegistry } from "./sqlite.ts";

/**
 * `create: false` is for readers: a sqlite file that is not there is a RegistryMissingError
 * (nothing is created). etcd has nothing to create.
 */
export async function openRegistry(
  opts: RegistryOptions,
  log: Logger,
  mode: { readonly create?: boolean } = {},
): Promise<Registry> {
  if (opts.kind === "sqlite")
    return SqliteRegistry.open({ path: opts.path, log, create: mode.create ?? true });
  const { createEtcdRegistry } = await import("./etcd.ts");
  return createEtcdRegistry({ ...opts, log });
}
