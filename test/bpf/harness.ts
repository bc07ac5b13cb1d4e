/**
 * The BPF test harness: loads build/tartan.bpf.o (unpinned), fills its maps with a
 * two-node fixture, and moves this test thread into a private network namespace
 * (an underlay veth with a permanent neighbour) so bpf_fib_lookup in the encap
 * program gives a deterministic next hop. The namespace also holds the fixture pod's
 * host-side veth (the endpoint map points at it: the pod program checks the veth a
 * packet arrives on), a blackhole route and an on-link node without a neighbour for the
 * encap programs' other FIB answers. Everything is removed by `close()`.
 */

import { dlopen, FFIType } from "bun:ffi";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CFG_READY,
  COUNTER_NAMES,
  type Config,
  configCodec,
  endpointValueCodec,
  ip4KeyCodec,
  MAPS,
  memberValueCodec,
  type NexthopValue,
  nexthopValueCodec,
  PROGRAMS,
  SUBNET_LOCAL,
  subnetKeyCodec,
  subnetValueCodec,
  u32Codec,
  u64Codec,
} from "../../src/bpf/abi.ts";
import type { BpfMap } from "../../src/bpf/map.ts";
import { BpfObject } from "../../src/bpf/object.ts";
import { type Cidr, parseIp4 } from "../../src/config/cidr.ts";

export const TC_ACT_OK = 0;
export const TC_ACT_SHOT = 2;
export const TC_ACT_REDIRECT = 7;
export const XDP_DROP = 1;
export const XDP_PASS = 2;

/** The fixture: we are node A; node B is remote. */
export const FX = {
  localIp: "198.18.0.1",
  remoteIp: "198.18.0.2",
  underlayMac: "02:00:00:00:00:01",
  remoteUnderlayMac: "02:00:00:00:00:02",
  vtepMac: "0a:00:00:00:00:01",
  remoteVtepMac: "0a:00:00:00:00:02",
  vni: 1,
  port: 8472,
  mtu: 1450,
  localSubnet: "198.19.1.0/24",
  remoteSubnet: "198.19.2.0/24",
  podIp: "198.19.1.5",
  podMac: "02:aa:00:00:00:05",
  gwMac: "02:bb:00:00:00:01",
  /** The fixture pod's host-side veth in the test namespace (its peer: podVethPeer). */
  podVeth: "vpod0",
  podVethPeer: "vpod1",
  /** A node on the underlay's link with no neighbour entry: bpf_fib_lookup answers NO_NEIGH. */
  noNeighNodeIp: "198.18.0.3",
  /** Routed to a blackhole: bpf_fib_lookup answers BLACKHOLE. */
  blackholeNodeIp: "198.18.9.9",
  remotePodIp: "198.19.2.7",
  remotePodMac: "02:aa:00:00:00:07",
} as const;

const libc = dlopen("libc.so.6", { setns: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 } });
const CLONE_NEWNET = 0x40000000;

async function sh(args: string[]): Promise<string> {
  const p = Bun.spawn(args, { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  if (code !== 0) throw new Error(`${args.join(" ")}: exit ${code}: ${err.trim()}`);
  return out;
}

function cidr(s: string): Cidr {
  const [a, l] = s.split("/");
  return { ip: parseIp4(a!)!, len: Number(l) };
}

export const OBJECT_PATH = `${import.meta.dir}/../../build/tartan.bpf.o`;

/** build/tartan.bpf.o, built with scripts/build-bpf when missing or older than bpf/. */
export async function ensureObject(): Promise<string> {
  const root = `${import.meta.dir}/../..`;
  const built = existsSync(OBJECT_PATH) ? statSync(OBJECT_PATH).mtimeMs : 0;
  const sources = [...new Bun.Glob("bpf/**/*.{c,h}").scanSync(root)].map(
    (f) => statSync(`${root}/${f}`).mtimeMs,
  );
  if (built === 0 || sources.some((m) => m > built)) {
    const p = Bun.spawnSync([`${root}/scripts/build-bpf`], { stdout: "pipe", stderr: "pipe" });
    if (p.exitCode !== 0) throw new Error(`scripts/build-bpf failed: ${p.stderr.toString()}`);
  }
  return OBJECT_PATH;
}

/** Compiles one BPF C source (clang-19, as scripts/build-bpf does) and returns the object's bytes. */
export function compileBpf(source: string): Uint8Array {
  const work = mkdtempSync(join(tmpdir(), "tartan-bpf-cc-"));
  try {
    const out = join(work, "prog.o");
    const cc = Bun.spawnSync(
      [
        "clang-19",
        "-O2",
        "-g",
        "-target",
        "bpf",
        "-I/usr/include/x86_64-linux-gnu",
        "-x",
        "c",
        "-",
        "-c",
        "-o",
        out,
      ],
      { stdin: new TextEncoder().encode(source), stderr: "pipe" },
    );
    if (cc.exitCode !== 0) throw new Error(`clang-19: ${cc.stderr.toString()}`);
    return readFileSync(out);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

export interface Harness {
  /** The private namespace's name (for `ip netns exec`). */
  readonly ns: string;
  readonly obj: BpfObject;
  readonly prog: Record<keyof typeof PROGRAMS, number>;
  readonly subnets: BpfMap<
    { prefixLen: number; addr: number },
    { nodeIp: number; vtepMac: string; flags: number }
  >;
  readonly members: BpfMap<number, number>;
  readonly endpoints: BpfMap<number, { ifindex: number; podMac: string; gwMac: string }>;
  readonly config: BpfMap<number, Config>;
  readonly counters: BpfMap<number, bigint>;
  readonly nexthops: BpfMap<number, NexthopValue>;
  readonly underlayIfindex: number;
  /** ifindex of the fixture pod's host-side veth (FX.podVeth), where the endpoint map puts FX.podIp. */
  readonly podIfindex: number;
  readonly cfg: Config;
  /** Sum over CPUs of every counter. */
  snapshot(): Record<string, number>;
  close(): Promise<void>;
}

let harnesses = 0;

export async function setupHarness(): Promise<Harness> {
  const ns = `tbpf-${process.pid}-${++harnesses}`;
  await sh(["ip", "netns", "add", ns]);
  let selfNs = -1;
  let obj: BpfObject | null = null;
  const cleanup = async () => {
    if (selfNs >= 0) {
      libc.symbols.setns(selfNs, CLONE_NEWNET);
      closeSync(selfNs);
      selfNs = -1;
    }
    obj?.close();
    await sh(["ip", "netns", "del", ns]).catch(() => {});
  };
  try {
    const ipn = (...a: string[]) => sh(["ip", "-n", ns, ...a]);
    await ipn(
      "link",
      "add",
      "ul0",
      "address",
      FX.underlayMac,
      "type",
      "veth",
      "peer",
      "name",
      "ul1",
      "address",
      FX.remoteUnderlayMac,
    );
    await ipn("addr", "add", `${FX.localIp}/24`, "dev", "ul0");
    await ipn("link", "add", FX.podVeth, "type", "veth", "peer", "name", FX.podVethPeer);
    for (const d of ["lo", "ul0", "ul1", FX.podVeth, FX.podVethPeer]) await ipn("link", "set", d, "up");
    await ipn("route", "add", "blackhole", `${FX.blackholeNodeIp}/32`);
    await ipn(
      "neigh",
      "replace",
      FX.remoteIp,
      "lladdr",
      FX.remoteUnderlayMac,
      "dev",
      "ul0",
      "nud",
      "permanent",
    );
    await sh(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.conf.all.forwarding=1"]);
    const ifindexOf = async (dev: string) =>
      (JSON.parse(await ipn("-json", "link", "show", dev)) as Array<{ ifindex: number }>)[0]!.ifindex;
    const underlayIfindex = await ifindexOf("ul0");
    const podIfindex = await ifindexOf(FX.podVeth);

    selfNs = openSync("/proc/thread-self/ns/net", "r");
    const target = openSync(`/run/netns/${ns}`, "r");
    const rc = libc.symbols.setns(target, CLONE_NEWNET);
    closeSync(target);
    if (rc !== 0) throw new Error("setns into the test namespace failed");

    obj = BpfObject.open(await Bun.file(`${import.meta.dir}/../../build/tartan.bpf.o`).bytes(), {
      name: "tartan-test",
    });
    obj.load();
    const o = obj;
    const prog = Object.fromEntries(
      Object.entries(PROGRAMS).map(([k, n]) => [k, o.program(n).fd]),
    ) as Harness["prog"];
    const subnets = o.map(MAPS.subnets, subnetKeyCodec, subnetValueCodec);
    const members = o.map(MAPS.members, ip4KeyCodec, memberValueCodec);
    const endpoints = o.map(MAPS.endpoints, ip4KeyCodec, endpointValueCodec);
    const config = o.map(MAPS.config, u32Codec, configCodec);
    const counters = o.map(MAPS.counters, u32Codec, u64Codec, { perCpu: true });
    const nexthops = o.map(MAPS.nexthops, ip4KeyCodec, nexthopValueCodec);

    const cfg: Config = {
      flags: CFG_READY,
      localIp: parseIp4(FX.localIp)!,
      underlayIfindex,
      vni: FX.vni,
      port: FX.port,
      overlayMtu: FX.mtu,
      underlayMac: FX.underlayMac,
      vtepMac: FX.vtepMac,
      ttl: 64,
      subnetLen: 24,
    };
    config.update(0, cfg);
    const local = cidr(FX.localSubnet);
    const remote = cidr(FX.remoteSubnet);
    subnets.update(
      { prefixLen: local.len, addr: local.ip },
      { nodeIp: parseIp4(FX.localIp)!, vtepMac: FX.vtepMac, flags: SUBNET_LOCAL },
    );
    subnets.update(
      { prefixLen: remote.len, addr: remote.ip },
      { nodeIp: parseIp4(FX.remoteIp)!, vtepMac: FX.remoteVtepMac, flags: 0 },
    );
    members.update(parseIp4(FX.remoteIp)!, 1);
    endpoints.update(parseIp4(FX.podIp)!, { ifindex: podIfindex, podMac: FX.podMac, gwMac: FX.gwMac });

    return {
      ns,
      obj: o,
      prog,
      subnets,
      members,
      endpoints,
      config,
      counters,
      nexthops,
      underlayIfindex,
      podIfindex,
      cfg,
      snapshot() {
        const out: Record<string, number> = {};
        COUNTER_NAMES.forEach((name, i) => {
          const per = counters.lookupPerCpu(i) ?? [];
          out[name] = Number(per.reduce((a, b) => a + b, 0n));
        });
        return out;
      },
      close: cleanup,
    };
  } catch (e) {
    await cleanup();
    throw e;
  }
}

/** Counters that changed between two snapshots, name → delta. */
export function delta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const d: Record<string, number> = {};
  for (const k of Object.keys(after)) if (after[k] !== before[k]) d[k] = after[k]! - (before[k] ?? 0);
  return d;
}
