/**
 * CNI errors: the spec's error object (`{cniVersion, code, msg, details}`) with its
 * well-known codes, and Tartan's plugin-specific codes (100+). A CniError thrown anywhere
 * in the plugin becomes exactly one such object on stdout and a non-zero exit.
 */

/** Codes 1-99 are the spec's; 100+ are this plugin's own. */
export const CNI_ERR = {
  /** The config's cniVersion is not one this plugin speaks (or CHECK on a version before 0.4.0). */
  INCOMPATIBLE_VERSION: 1,
  /** A field of the network config is not supported. */
  UNSUPPORTED_FIELD: 2,
  /** The container is unknown (CHECK for a container this plugin never added). */
  UNKNOWN_CONTAINER: 3,
  /** CNI_COMMAND, CNI_CONTAINERID, CNI_IFNAME, CNI_NETNS or CNI_PATH missing or malformed. */
  INVALID_ENV: 4,
  /** Reading or writing the plugin's own state failed. */
  IO_FAILURE: 5,
  /** stdin (or prevResult) is not JSON / not the expected shape of JSON. */
  DECODE_FAILURE: 6,
  /** The network config is JSON but invalid. */
  INVALID_CONFIG: 7,
  /** A transient condition (subnet.env not yet written by the agent): retry later. */
  TRY_AGAIN_LATER: 11,
  /** The delegate plugin (bridge, …) is not in CNI_PATH. */
  DELEGATE_NOT_FOUND: 100,
  /** subnet.env exists but is malformed. */
  SUBNET_ENV_INVALID: 101,
  /** The delegate plugin failed without a CNI error of its own, or answered garbage. */
  DELEGATE_FAILED: 102,
} as const;

export interface CniErrorJson {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

export class CniError extends Error {
  override name = "CniError";
  constructor(
    readonly code: number,
    msg: string,
    readonly details?: string,
    options?: ErrorOptions,
  ) {
    super(msg, options);
  }

  toJson(cniVersion: string): CniErrorJson {
    const out: CniErrorJson = { cniVersion, code: this.code, msg: this.message };
    if (this.details) out.details = this.details;
    return out;
  }
}

/** A delegate's own CNI error, passed through with its code (the runtime sees bridge's reason). */
export function isCniErrorJson(x: unknown): x is CniErrorJson {
  if (typeof x !== "object" || x === null) return false;
  const o = x as Record<string, unknown>;
  return typeof o.code === "number" && typeof o.msg === "string";
}
