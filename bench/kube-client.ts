/**
 * Which Kubernetes client for the kube subnet manager: Tartan's own (src/kube/, over
 * Bun's fetch) or @kubernetes/client-node 2.x, measured in this Bun, compiled
 * (`bun build --compile`) as the agent ships:
 *
 * - binary size: a bare Bun program, each probe, and dist/tartan (src/main.ts) with each
 *   client added as a second entry point (the growth of the agent's binary);
 * - idle RSS: each probe listing + watching 3 Nodes, 10 s after its list;
 * - at N = 5,000 and 10,000 realistic Nodes (about 6 KB of JSON each, test/helpers/
 *   kube-nodes.ts): time to the first full list, CPU-seconds for it, RSS after; then a
 *   watch burst (every Node's public-ip annotation changed: N MODIFIED events): time
 *   from the first write to the probe having seen all N, CPU-seconds, peak and final RSS.
 *
 * Both probes run against the stand-in API server (test/helpers/kube-apiserver.ts,
 * in this process) over HTTPS with a throwaway CA and a bearer token, from a kubeconfig:
 * the compiled binaries must do TLS with a custom CA, tokens and chunked watches.
 * client-node is installed into $TMPDIR/tartan-kube-client-bench/ (not a dependency of Tartan).
 * Usage: node_modules/.bin/bun bench/kube-client.ts [N ...]   (default 5000 10000)
 * Results: docs/kubernetes-client.md.
 */
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { makeTestPki } from "../test/helpers/certs.ts";
import { type KubeApiServer, startKubeApiServer } from "../test/helpers/kube-apiserver.ts";
import { flanneldVxlanAnnotations, macFor, makeNode } from "../test/helpers/kube-nodes.ts";

const ROOT = resolve(import.meta.dir, "..");
const BUN = join(ROOT, "node_modules/.bin/bun");
// outside the tree: generated probes and the client-node install are no part of Tartan
const WORK = join(tmpdir(), "tartan-kube-client-bench");
const CLIENT_NODE = "@kubernetes/client-node@2.0.1";

/** The client-node probe: the informer as its README shows it, restarted on error, same output as probe-tartan.ts. */
const CLIENT_NODE_PROBE = `
import * as k8s from "@kubernetes/client-node";
import { parseCidr } from "${ROOT}/src/config/cidr.ts";
import { annotationNames } from "${ROOT}/src/kube/annotations.ts";
import { nodeLease } from "${ROOT}/src/kube/node-lease.ts";
const names = annotationNames();
const network = parseCidr("198.19.0.0/16");
const kc = new k8s.KubeConfig();
// IN_CLUSTER_PREFIX: a directory holding var/run/secrets/kubernetes.io/serviceaccount/ (the capability check)
if (process.env.IN_CLUSTER_PREFIX) kc.loadFromCluster(process.env.IN_CLUSTER_PREFIX);
else kc.loadFromFile(process.env.KUBECONFIG);
const api = kc.makeApiClient(k8s.CoreV1Api);
let synced = false;
let events = 0;
// informer.start() resolves only once the watch has its first event (Bun's fetch resolves
// with the first chunk of the body), so "synced" is said right after the list is cached
const report = () => {
  synced = true;
  const all = informer.list();
  let leases = 0;
  for (const n of all) if (nodeLease(n, names, network).ok) leases++;
  console.log(JSON.stringify({ synced: all.length, leases }));
};
const informer = k8s.makeInformer(kc, "/api/v1/nodes", () =>
  api.listNode().then((l) => { if (!synced) setTimeout(report, 0); return l; }),
);
const take = (n) => { nodeLease(n, names, network); if (synced) { events++; console.log(JSON.stringify({ events })); } };
informer.on("add", take);
informer.on("update", take);
informer.on("delete", take);
informer.on("error", (e) => { console.log(JSON.stringify({ error: String(e && e.message || e) })); setTimeout(() => informer.start(), 1000); });
void informer.start();
`;

const BARE_PROBE = `console.log(JSON.stringify({ synced: 0, leases: 0 })); setInterval(() => {}, 1 << 30);`;

async function sh(cmd: string[], cwd = ROOT): Promise<string> {
  const p = Bun.spawn(cmd, { cwd, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  if (code !== 0) throw new Error(`${cmd.join(" ")} exited ${code}: ${err.trim()}`);
  return out;
}

async function compile(entry: string | string[], out: string): Promise<number> {
  const entries = Array.isArray(entry) ? entry : [entry];
  await sh(
    [BUN, "build", "--compile", "--minify-syntax", "--sourcemap=none", ...entries, "--outfile", out],
    WORK,
  );
  return statSync(out).size;
}

const mib = (b: number) => b / 1024 / 1024;
const kib = (b: number) => (b / 1024).toFixed(0);

function procStat(pid: number): { cpuSec: number; rss: number; anon: number; file: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const cpuSec = (Number(f[11]) + Number(f[12])) / 100; // utime + stime, clock ticks
  const st = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(st)?.[1] ?? Number.NaN) / 1024;
  return { cpuSec, rss: kb("VmRSS"), anon: kb("RssAnon"), file: kb("RssFile") };
}

interface Probe {
  readonly pid: number;
  readonly lines: Record<string, number | string>[];
  stop(): Promise<void>;
}

/** Extra environment per probe (client-node needs NODE_EXTRA_CA_CERTS under Bun: see the capability check). */
const probeEnv: Record<string, Record<string, string>> = {};

function startProbe(bin: string, kubeconfig: string, extra: Record<string, string> = {}): Probe {
  const p = Bun.spawn(["setpriv", "--pdeathsig", "SIGKILL", bin], {
    env: { ...process.env, ...probeEnv[bin], KUBECONFIG: kubeconfig, NODE_NAME: "node-1", ...extra },
    stdout: "pipe",
    stderr: "inherit",
  });
  const lines: Record<string, number | string>[] = [];
  void (async () => {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of p.stdout) {
      buf += dec.decode(chunk);
      const nl = buf.lastIndexOf("\n");
      if (nl < 0) continue;
      for (const l of buf.slice(0, nl).split("\n")) if (l) lines.push(JSON.parse(l));
      buf = buf.slice(nl + 1);
    }
  })();
  return {
    pid: p.pid,
    lines,
    async stop() {
      p.kill("SIGKILL");
      await p.exited;
    },
  };
}

async function waitFor(
  probe: Probe,
  what: string,
  ok: (l: Record<string, number | string>) => boolean,
  ms = 600_000,
) {
  const end = Date.now() + ms;
  for (;;) {
    const err = probe.lines.find((l) => l.error);
    if (err) throw new Error(`probe failed: ${err.error}`);
    if (probe.lines.some(ok)) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

function nodes(n: number): Record<string, unknown>[] {
  const out = [];
  for (let i = 1; i <= n; i++) {
    // 198.19.0.0/16 as /30s holds 16,384 subnets
    const sub = (i * 4) >>> 0;
    out.push(
      makeNode({
        name: `node-${i}`,
        podCIDR: `198.19.${sub >> 8}.${sub & 255}/30`,
        internalIp: `198.18.${i >> 8}.${i & 255}`,
        annotations: flanneldVxlanAnnotations(`198.18.${i >> 8}.${i & 255}`, macFor(i)),
        realistic: true,
      }),
    );
  }
  return out;
}

let bursts = 0;

interface ScaleResult {
  listMs: number;
  listCpu: number;
  rssAfterList: number;
  anonAfterList: number;
  burstMs: number;
  burstCpu: number;
  rssPeak: number;
  rssAfterBurst: number;
}

async function scale(bin: string, api: KubeApiServer, kubeconfig: string, n: number): Promise<ScaleResult> {
  const t0 = performance.now();
  const probe = startProbe(bin, kubeconfig);
  try {
    await waitFor(probe, "the list", (l) => l.synced === n);
    const listMs = performance.now() - t0;
    const afterList = procStat(probe.pid);
    await Bun.sleep(3000);
    const settled = procStat(probe.pid);
    let peak = settled.rss;
    const sampler = setInterval(() => {
      peak = Math.max(peak, procStat(probe.pid).rss);
    }, 50);
    const t1 = performance.now();
    const names = Array.from({ length: n }, (_, i) => `node-${i + 1}`);
    // a new value every burst: a patch that changes nothing is no event
    const publicIp = `198.18.255.${++bursts}`;
    // chunks, so the probe reads while the stand-in writes (as a rollout would)
    for (let i = 0; i < n; i += 500) {
      await api.annotateNodes(names.slice(i, i + 500), {
        "flannel.alpha.coreos.com/public-ip": publicIp,
      });
      await Bun.sleep(0);
    }
    await waitFor(probe, "the burst", (l) => typeof l.events === "number" && l.events >= n);
    const burstMs = performance.now() - t1;
    const afterBurst = procStat(probe.pid);
    clearInterval(sampler);
    peak = Math.max(peak, afterBurst.rss);
    await Bun.sleep(3000);
    return {
      listMs,
      listCpu: afterList.cpuSec,
      rssAfterList: settled.rss,
      anonAfterList: settled.anon,
      burstMs,
      burstCpu: afterBurst.cpuSec - settled.cpuSec,
      rssPeak: peak,
      rssAfterBurst: procStat(probe.pid).rss,
    };
  } finally {
    await probe.stop();
  }
}

async function idle(bin: string, kubeconfig: string): Promise<{ rss: number; anon: number; file: number }> {
  const probe = startProbe(bin, kubeconfig);
  try {
    await waitFor(probe, "the list", (l) => l.synced !== undefined, 60_000);
    await Bun.sleep(10_000);
    return procStat(probe.pid);
  } finally {
    await probe.stop();
  }
}

const sizes = process.argv.slice(2).map(Number);
const counts = sizes.length ? sizes : [5000, 10000];
mkdirSync(WORK, { recursive: true });
if (!existsSync(join(WORK, "node_modules/@kubernetes/client-node"))) {
  writeFileSync(join(WORK, "package.json"), '{"name":"kube-client-bench","private":true,"type":"module"}\n');
  await sh(["npm", "install", "--no-audit", "--no-fund", "--save-exact", CLIENT_NODE], WORK);
}
writeFileSync(join(WORK, "probe-client-node.js"), CLIENT_NODE_PROBE);
writeFileSync(join(WORK, "probe-bare.js"), BARE_PROBE);
// dist/tartan with each client added as a second entry point, all its exports kept (a
// module imported from src/main.ts would be tree-shaken to what the agent uses; this is the upper bound)
writeFileSync(
  join(WORK, "extra-tartan.ts"),
  `export * from "${ROOT}/src/kube/lease-source.ts";\nexport * from "${ROOT}/src/kube/node-name.ts";\n`,
);
writeFileSync(join(WORK, "extra-client-node.ts"), 'export * from "@kubernetes/client-node";\n');
const bins = {
  bare: join(WORK, "probe-bare"),
  tartan: join(WORK, "probe-tartan"),
  clientNode: join(WORK, "probe-client-node"),
};
const size = {
  bare: await compile(join(WORK, "probe-bare.js"), bins.bare),
  tartan: await compile(join(ROOT, "bench/kube-client/probe-tartan.ts"), bins.tartan),
  clientNode: await compile(join(WORK, "probe-client-node.js"), bins.clientNode),
  mainAlone: await compile(join(ROOT, "src/main.ts"), join(WORK, "main-alone")),
  mainTartan: await compile(
    [join(ROOT, "src/main.ts"), join(WORK, "extra-tartan.ts")],
    join(WORK, "main-tartan"),
  ),
  mainClientNode: await compile(
    [join(ROOT, "src/main.ts"), join(WORK, "extra-client-node.ts")],
    join(WORK, "main-client-node"),
  ),
};
console.log("binary size (MiB):");
console.log(
  `  bare Bun program ${mib(size.bare).toFixed(2)}; probe tartan ${mib(size.tartan).toFixed(2)} (+${mib(size.tartan - size.bare).toFixed(2)}); probe client-node ${mib(size.clientNode).toFixed(2)} (+${mib(size.clientNode - size.bare).toFixed(2)})`,
);
console.log(
  `  dist/tartan entry ${mib(size.mainAlone).toFixed(2)}; + tartan's client ${kib(size.mainTartan - size.mainAlone)} KiB; + client-node ${kib(size.mainClientNode - size.mainAlone)} KiB`,
);

const pki = await makeTestPki("127.0.0.1");
const api = await startKubeApiServer({
  tls: { certFile: pki.serverCertFile, keyFile: pki.serverKeyFile },
  token: "bench-token",
  historyLimit: 50_000,
  bookmarkIntervalMs: 60_000,
});
const kubeconfig = join(WORK, "kubeconfig");
writeFileSync(
  kubeconfig,
  `apiVersion: v1
kind: Config
current-context: bench
clusters: [{name: standin, cluster: {server: "${api.url}", certificate-authority-data: ${Buffer.from(readFileSync(pki.caFile)).toString("base64")}}}]
contexts: [{name: bench, context: {cluster: standin, user: agent}}]
users: [{name: agent, user: {token: bench-token}}]
`,
);
/** Does the probe list the 3 Nodes with this kubeconfig (and env)? "ok" or the error it reports. */
async function works(bin: string, cfg: string, env: Record<string, string> = {}): Promise<string> {
  const probe = startProbe(bin, cfg, env);
  try {
    await waitFor(probe, "the list", (l) => l.synced === 3, 15_000);
    return "ok";
  } catch (e) {
    return (e as Error).message;
  } finally {
    await probe.stop();
  }
}

// a second stand-in that demands a client certificate
const certApi = await startKubeApiServer({
  tls: { certFile: pki.serverCertFile, keyFile: pki.serverKeyFile, clientCaFile: pki.caFile },
});
const certConfig = join(WORK, "kubeconfig-cert");
writeFileSync(
  certConfig,
  `apiVersion: v1
kind: Config
current-context: bench
clusters: [{name: standin, cluster: {server: "${certApi.url}", certificate-authority: ${pki.caFile}}}]
contexts: [{name: bench, context: {cluster: standin, user: agent}}]
users: [{name: agent, user: {client-certificate: ${pki.clientCertFile}, client-key: ${pki.clientKeyFile}}}]
`,
);
try {
  await api.createNodes(nodes(3));
  await certApi.createNodes(nodes(3));
  console.log("compiled, against the stand-in over HTTPS (CA from the kubeconfig):");
  // in-cluster: a service-account directory (token, ca.crt) and KUBERNETES_SERVICE_HOST/PORT
  const prefix = join(WORK, "in-cluster");
  const saDir = join(prefix, "var/run/secrets/kubernetes.io/serviceaccount");
  mkdirSync(saDir, { recursive: true });
  writeFileSync(join(saDir, "token"), "bench-token");
  writeFileSync(join(saDir, "ca.crt"), readFileSync(pki.caFile));
  writeFileSync(join(saDir, "namespace"), "kube-system");
  const inCluster = {
    KUBERNETES_SERVICE_HOST: "127.0.0.1",
    KUBERNETES_SERVICE_PORT: new URL(api.url).port,
    IN_CLUSTER_PREFIX: prefix,
  };
  for (const name of ["tartan", "clientNode"] as const) {
    console.log(`  ${name.padEnd(10)} in-cluster service account: ${await works(bins[name], "", inCluster)}`);
    console.log(
      `  ${name.padEnd(10)} CA + token: ${await works(bins[name], kubeconfig)}; client certificate: ${await works(bins[name], certConfig)}`,
    );
  }
  probeEnv[bins.clientNode] = { NODE_EXTRA_CA_CERTS: pki.caFile };
  console.log(
    `  clientNode with NODE_EXTRA_CA_CERTS: CA + token: ${await works(bins.clientNode, kubeconfig)} (the figures below run it so)`,
  );
  console.log("idle, 3 Nodes listed and watched, 10 s after the list (MiB RSS = anon + file):");
  for (const [name, bin] of Object.entries(bins)) {
    const r = await idle(bin, kubeconfig);
    console.log(`  ${name.padEnd(10)} ${r.rss.toFixed(1)} = ${r.anon.toFixed(1)} + ${r.file.toFixed(1)}`);
  }
  let have = 3;
  for (const n of counts) {
    const more = nodes(n).slice(have);
    await api.createNodes(more);
    have = n;
    console.log(`N = ${n}:`);
    for (const name of ["tartan", "clientNode"] as const) {
      try {
        const r = await scale(bins[name], api, kubeconfig, n);
        console.log(
          `  ${name.padEnd(10)} list ${(r.listMs / 1000).toFixed(2)} s, ${r.listCpu.toFixed(2)} CPU-s, RSS ${r.rssAfterList.toFixed(1)} MiB (anon ${r.anonAfterList.toFixed(1)}); burst of ${n}: ${(r.burstMs / 1000).toFixed(2)} s, ${r.burstCpu.toFixed(2)} CPU-s, RSS peak ${r.rssPeak.toFixed(1)}, after ${r.rssAfterBurst.toFixed(1)} MiB`,
        );
      } catch (e) {
        console.log(`  ${name.padEnd(10)} FAILED: ${(e as Error).message}`);
      }
    }
  }
} finally {
  await api.close();
  await certApi.close();
  pki.remove();
}
