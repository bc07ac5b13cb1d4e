/**
 * Rewrites README.md's generated flag tables (between `<!-- flags:NAME -->` and
 * `<!-- /flags -->`) from the flag declarations in src/cli/. Run after changing a flag:
 *   node_modules/.bin/bun scripts/readme-flags.ts
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { renderFlagSections } from "../src/cli/readme.ts";

const path = join(import.meta.dir, "..", "README.md");
const before = readFileSync(path, "utf8");
const after = renderFlagSections(before);
if (after !== before) writeFileSync(path, after);
console.log(after === before ? "README.md: flag tables already current" : "README.md: flag tables rewritten");
