/** The build's version, stamped by scripts/build through --define (falls back to package.json's). */
import pkg from "../package.json" with { type: "json" };

declare const TARTAN_COMMIT: string | undefined;

export const VERSION: string = pkg.version;
export const COMMIT: string = typeof TARTAN_COMMIT === "string" ? TARTAN_COMMIT : "dev";
