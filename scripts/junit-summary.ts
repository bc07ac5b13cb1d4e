/**
 * Reads bun's JUnit reports and prints the plain line CI reads: "N passed, N failed"
 * (", N skipped" when any were), summed over every report given. Exits 1 when a report
 * is missing or holds no test case.
 */
const paths = process.argv.slice(2);
if (paths.length === 0) paths.push(".test-report/junit.xml");
let xml = "";
for (const path of paths) {
  const file = Bun.file(path);
  if (!(await file.exists())) {
    console.error(`junit-summary: no report at ${path} (the test run did not finish)`);
    process.exit(1);
  }
  xml += await file.text();
}
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
  console.error(`junit-summary: ${paths.join(", ")} hold no test cases`);
  process.exit(1);
}
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
export {};
