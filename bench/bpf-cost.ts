/**
 * Per-packet cost of the IPv4 encapsulating programs through BPF_PROG_TEST_RUN, one call
 * per packet (repeat = 1: with repeat > 1 the kernel reruns a TC program on the same skb,
 * which after the first run is already encapsulated, so it would time the pass path).
 * The checkout is an argument so that two builds can be alternated, e.g. before and after
 * a change (each with its own `scripts/build-bpf` done):
 *
 *   for i in 1 2 3; do for r in /tmp/base /work/main; do bun bench/bpf-cost.ts $r; done; done
 *
 * Prints the 10th percentile and the median of the kernel's own duration per call for a
 * 1,054-byte TCP frame through tartan_encap_fwd (bridge) and tartan_encap_pod (pod veth).
 * Needs root (the BPF test harness makes a private network namespace).
 */
const root = process.argv[2] ?? `${import.meta.dir}/..`;
const calls = Number(process.argv[3] ?? 20000);
const TC_ACT_REDIRECT = 7;
const { setupHarness } = await import(`${root}/test/bpf/harness.ts`);
const { innerIp, fromPod } = await import(`${root}/test/bpf/frames.ts`);
const { testRun } = await import(`${root}/src/bpf/test-run.ts`);

const h = await setupHarness();
try {
  // 14 Ethernet + 20 IPv4 + 20 TCP + payload = 1,054 bytes
  const pkt: Uint8Array = fromPod(innerIp({ proto: 6, size: 1054 - 14 - 20 - 20 }));
  const out: Record<string, string> = {};
  for (const [name, prog, skb] of [
    ["encap_fwd", h.prog.encapFwd, {}],
    ["encap_pod", h.prog.encapPod, { ifindex: h.podIfindex }],
  ] as const) {
    const ns: number[] = [];
    let redirected = 0;
    for (let i = 0; i < calls; i++) {
      const r = testRun(prog, { data: pkt, skb });
      if (r.retval === TC_ACT_REDIRECT) redirected++;
      ns.push(r.durationNs);
    }
    ns.sort((a, b) => a - b);
    const q = (p: number) => ns[Math.floor(p * (ns.length - 1))];
    out[name] = `p10 ${q(0.1)} ns, p50 ${q(0.5)} ns (encapsulated ${redirected}/${calls}, ${pkt.length} B)`;
  }
  console.log(`${root}: ${JSON.stringify(out)}`);
} finally {
  await h.close();
}
