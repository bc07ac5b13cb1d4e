import { expect, test } from "bun:test";
import { stepLine, useColour } from "../../scripts/demo-style.ts";

test("the demo writes ANSI bold only to a terminal, and never with NO_COLOR", () => {
  expect(useColour(true, {})).toBe(true);
  expect(useColour(false, {})).toBe(false);
  expect(useColour(undefined, {})).toBe(false);
  expect(useColour(true, { NO_COLOR: "1" })).toBe(false);
  expect(useColour(true, { NO_COLOR: "" })).toBe(true);
  expect(useColour(true, { TERM: "dumb" })).toBe(false);
  expect(stepLine("leases", false)).toBe("\n== leases");
  expect(stepLine("leases", true)).toBe("\n\x1b[1m== leases\x1b[0m");
});
