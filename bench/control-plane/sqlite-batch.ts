/**
 * Control-plane figures: N leases appear in the registry at once (one sqlite
 * transaction); how long until the agent has all N programmed — as the agent measured
 * its apply (from delivery to programmed) and end to end (commit to /v1/status saying so,
 * which includes the registry's 100 ms watch poll) — plus the agent's RSS holding them
 * (split into the binary's file-backed pages and anonymous memory, from
 * /proc/PID/smaps_rollup), and the time from agent start to /readyz.
 * bench/CONTROL-PLANE.md has the measurements and where the time and memory go.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cidrToKey } from "../../src/config/cidr.ts";
import { encodeLeaseValue } from "../../src/lease/lease.ts";
import { silentLogger } from "../../src/log.ts";
import { SqliteRegistry } from "../../src/registry/sqlite.ts";
import { Lab, until } from "../../test/helpers/netns.ts";
import { startAgent, tartan, waitReady } from "../../test/helpers/tartan.ts";

export interface ControlPlaneResult {
  backend: string;
  leases: number;
  /** the agent's own apply duration for the batch (delivery → programmed) */
  applyMs: number;
  /** registry commit → /v1/status reports all programmed */
  endToEndMs: number;
  rssMiB: number;
  /** of rssMiB: anonymous memory (JS heap, allocators, JIT code) */
  rssAnonMiB: number;
  /** of rssMiB: file-backed pages, nearly all the tartan binary's own code and data */
  rssFileMiB: number;
  startToReadyMs: number;
}

function fakeLeases(n: number): { key: string; value: string; ttlMs: number | null }[] {
  const out = [];
  for (let i = 0; i < n; i++) {
    // 198.19.0.0/16 in /30s: 16,384 subnets; skip index 0 (flannel skips the first subnet)
    const subnet = { ip: (0xc6130000 + (i + 1) * 4) >>> 0, len: 30 };
    const host = i + 10;
    const publicIp = (0xc6120000 + (host >>> 8) * 256 + (host & 255)) >>> 0; // 198.18.x.y, never contacted
    const mac = `0e:aa:${((i >>> 16) & 255).toString(16).padStart(2, "0")}:${((i >>> 8) & 255).toString(16).padStart(2, "0")}:${(i & 255).toString(16).padStart(2, "0")}:01`;
    out.push({
      key: cidrToKey(subnet),
      value: encodeLeaseValue({ publicIp, backendType: "vxlan", vxlan: { VNI: 1, VtepMAC: mac } }),
      ttlMs: null,
    });
  }
  return out;
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

/** Anonymous and file-backed resident memory (MiB) from smaps_rollup. */
function rssSplit(pid: number): { anon: number; file: number } {
  const s = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(s)?.[1] ?? Number.NaN);
  const anon = kb("Anonymous") / 1024;
  return { anon, file: kb("Rss") / 1024 - anon };
}

export async function controlPlane(backend: string, n: number): Promise<ControlPlaneResult> {
  const lab = new Lab("bcp");
  try {
    const dbPath = join(lab.dir, "registry.db");
    writeFileSync(
      join(lab.dir, "net.json"),
      JSON.stringify({ Network: "198.19.0.0/16", SubnetLen: 30, Backend: { Type: "vxlan" } }),
    );
    const r = await tartan(["config", "set", join(lab.dir, "net.json"), `--registry=sqlite:${dbPath}`]);
    if (r.code !== 0) throw new Error(r.stderr);
    const node = await lab.addNode();
    const bpffs = `/sys/fs/bpf/tartan-bench-${lab.prefix}`;
    lab.bpffsDirs.push(bpffs);
    const t0 = performance.now();
    const agent = startAgent(lab, {
      node,
      name: "agent",
      registry: `sqlite:${dbPath}`,
      backend,
      subnetFile: join(lab.dir, "subnet.env"),
      extra: [`--bpffs=${bpffs}`, "--log-level=warn"],
    });
    await waitReady(lab, node.ns, agent, 8471, 30_000);
    const startToReadyMs = performance.now() - t0;
    const reg = SqliteRegistry.open({ path: dbPath, log: silentLogger });
    const leases = fakeLeases(n);
    // the agent's own subnet is among the candidates: that one key is skipped
    const created = reg.createMany(leases);
    const committed = performance.now();
    await reg.close();
    // poll the small /metrics document, not /v1/status (10,000 leases of JSON per poll would
    // inflate the agent's memory that this benchmark reports)
    const metric = async (name: string) => {
      const m = new RegExp(`^${name} ([\\d.e+-]+)$`, "m").exec((await lab.http(node.ns, "/metrics")).body);
      return m ? Number(m[1]) : Number.NaN;
    };
    await until(
      async () => (await metric("tartan_leases_programmed")) >= created,
      `${n} leases programmed`,
      120_000,
    ).catch(async (e) => {
      throw new Error(`${(e as Error).message}\n--- agent log ---\n${(await lab.log(agent)).slice(-3000)}`);
    });
    const endToEndMs = performance.now() - committed;
    const applyMs = (await metric("tartan_datapath_last_apply_seconds")) * 1000;
    await Bun.sleep(1000); // let the agent settle (its scan timers run) before reading its size
    const split = rssSplit(agent.proc.pid);
    return {
      backend,
      leases: n,
      applyMs,
      endToEndMs,
      rssMiB: rssMiB(agent.proc.pid),
      rssAnonMiB: split.anon,
      rssFileMiB: split.file,
      startToReadyMs,
    };
  } finally {
    await lab.cleanup();
  }
}
