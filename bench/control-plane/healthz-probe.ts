/**
 * Benchmark helper (bench/control-plane.ts), run inside the agent's namespace: asks the
 * agent's /healthz every INTERVAL ms (one request at a time; a slow answer delays the
 * next), and on SIGTERM prints every probe as one JSON line:
 * {"probes":[[startEpochMs, latencyMs, httpStatus], …]} (status 0: no answer).
 *   bun healthz-probe.ts URL INTERVAL_MS
 */
const [url, interval] = process.argv.slice(2);
const every = Number(interval);
const probes: [number, number, number][] = [];
let stopped = false;

process.on("SIGTERM", () => {
  stopped = true;
});

while (!stopped) {
  const at = Date.now();
  const t0 = performance.now();
  let status = 0;
  try {
    const r = await fetch(url!, { signal: AbortSignal.timeout(10_000) });
    await r.arrayBuffer();
    status = r.status;
  } catch {
    status = 0;
  }
  const ms = performance.now() - t0;
  probes.push([at, Math.round(ms * 100) / 100, status]);
  const wait = every - ms;
  if (wait > 0) await Bun.sleep(wait);
}
console.log(JSON.stringify({ probes }));
process.exit(0);

export {};
