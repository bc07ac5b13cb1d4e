/**
 * Reads bun's JUnit report and prints the plain line CI reads: "N passed, N failed"
 * (", N skipped" when any were). Exits 1 when the report is missing or unreadable.
 */
const path = process.argv[2] ?? ".test-report/junit.xml";
const file = Bun.file(path);
if (!(await file.exists())) {
  console.error(`junit-summary: no report at ${path} (the test run did not finish)`);
  process.exit(1);
}
const xml = await file.text();
let passed = 0;
let failed = 0;
let skipped = 0;
// Count test cases one by one: the totals on <testsuites> omit cases of files that crashed.
for (const m of xml.matchAll(/<testcase\b[^>]*?(\/>|>([\s\S]*?)<\/testcase>)/g)) {
  const body = m[2] ?? "";
  if (/<(failure|error)\b/.test(body)) failed++;
  else if (/<skipped\b/.test(body)) skipped++;
  else passed++;
}
if (passed + failed + skipped === 0) {
  console.error(`junit-summary: ${path} holds no test cases`);
  process.exit(1);
}
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
export {};
