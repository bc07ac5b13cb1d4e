/**
 * CNI spec versions: which this plugin speaks (0.3.0 through 1.0.0), the VERSION
 * command's answer, and the checks a command makes against the config's cniVersion
 * (CHECK exists from 0.4.0). Pure.
 */
import { CNI_ERR, CniError } from "./errors.ts";

export const SUPPORTED_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
export const CURRENT_VERSION: CniVersion = "1.0.0";

export function isSupported(v: string): v is CniVersion {
  return (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/** Compares dotted versions numerically: -1, 0 or 1. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return 0;
}

/** The config's cniVersion as a supported version, or the spec's code-1 error. */
export function negotiate(configVersion: unknown): CniVersion {
  if (typeof configVersion === "string" && isSupported(configVersion)) return configVersion;
  const got = configVersion === undefined ? "nothing" : JSON.stringify(configVersion);
  throw new CniError(
    CNI_ERR.INCOMPATIBLE_VERSION,
    `incompatible CNI versions: config cniVersion is ${got}, plugin supports ${SUPPORTED_VERSIONS.join(", ")}`,
  );
}

/** CHECK was added in spec 0.4.0; a config of an older version cannot ask for it. */
export function requireCheckSupport(v: CniVersion): void {
  if (compareVersions(v, "0.4.0") < 0)
    throw new CniError(
      CNI_ERR.INCOMPATIBLE_VERSION,
      `config cniVersion ${v} does not allow CHECK (CHECK exists from 0.4.0)`,
    );
}

/** The VERSION command's answer. */
export function versionInfo(configVersion?: unknown): { cniVersion: string; supportedVersions: string[] } {
  const v = typeof configVersion === "string" && isSupported(configVersion) ? configVersion : CURRENT_VERSION;
  return { cniVersion: v, supportedVersions: [...SUPPORTED_VERSIONS] };
}
