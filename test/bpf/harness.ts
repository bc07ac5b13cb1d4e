/**
 * The BPF test harness: loads build/tartan.bpf.o (unpinned), fills its maps with a
 * two-node fixture, and moves this test thread into a private network namespace
 * (an underlay veth with a permanent neighbour) so bpf_fib_lookup in the encap
 * program gives a deterministic next hop. The namespace also holds the fixture pod's
 * host-side veth (the endpoint map points at it: the pod program checks the veth a
 * packet arrives on), a blackhole route and an on-link node without a neighbour for the
 * encap programs' other FIB answers. With `ipv6`, the dual-stack twin: IPv6 on the
 * underlay (a permanent neighbour for the remote node), the IPv6 maps filled and the
 * config's IPv6 part set (frames6.ts builds the frames). Everything is removed by `close()`.
 */

import { dlopen, FFIType } from "bun:ffi";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CFG_IPV6,
  CFG_READY,
  COUNTER_NAMES,
  type Config,
  configCodec,
  endpointValueCodec,
  ip4KeyCodec,
  ip6KeyCodec,
  MAPS,
  memberValueCodec,
  type NexthopValue,
  nexthopValueCodec,
  PROGRAMS,
  SUBNET_LOCAL,
  type Subnet6Key,
  type Subnet6Value,
  subnet6KeyCodec,
  subnet6ValueCodec,
  subnetKeyCodec,
  subnetValueCodec,
  u32Codec,
  u64Codec,
} from "../../src/bpf/abi.ts";
import type { BpfMap } from "../../src/bpf/map.ts";
import { BpfObject } from "../../src/bpf/object.ts";
import { type Cidr, parseIp4 } from "../../src/config/cidr.ts";
import { type Ip6, parseCidr6, parseIp6 } from "../../src/config/cidr6.ts";

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
  // dual stack (setupHarness({ ipv6: true }))
  localIp6: "fd00:18::1",
  remoteIp6: "fd00:18::2",
  /** On the underlay's link, no neighbour: NO_NEIGH. */
  noNeighNodeIp6: "fd00:18::3",
  /** Routed to a blackhole: BLACKHOLE. */
  blackholeNodeIp6: "fd00:18:9::9",
  localSubnet6: "fd00:19:0:1::/64",
  remoteSubnet6: "fd00:19:0:2::/64",
  podIp6: "fd00:19:0:1::5",
  remotePodIp6: "fd00:19:0:2::7",
  /** Where IPv6 GSO packets are redirected to (the overlay device's stand-in). */
  overlay: "tovl0",
} as const;

/** An IPv6 address of the fixture, as the maps hold it. */
export function ip6Of(s: string): Ip6 {
  return parseIp6(s)!;
}

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
  readonly subnets6: BpfMap<Subnet6Key, Subnet6Value>;
  readonly members6: BpfMap<Ip6, number>;
  readonly nexthops6: BpfMap<Ip6, NexthopValue>;
  readonly endpoints6: BpfMap<Ip6, { ifindex: number; podMac: string; gwMac: string }>;
  readonly underlayIfindex: number;
  /** ifindex of FX.overlay (IPv6 harness: the config's overlay device). */
  readonly overlayIfindex: number;
  /** ifindex of the fixture pod's host-side veth (FX.podVeth), where the endpoint map puts FX.podIp. */
  readonly podIfindex: number;
  readonly cfg: Config;
  /** Sum over CPUs of every counter. */
  snapshot(): Record<string, number>;
  close(): Promise<void>;
}

let harnesses = 0;

export async function setupHarness(opts: { ipv6?: boolean } = {}): Promise<Harness> {
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
    await ipn("link", "add", FX.overlay, "type", "veth", "peer", "name", `${FX.overlay}p`);
    if (opts.ipv6) {
      // bpf_fib_lookup answers FWD_DISABLED for IPv6 without forwarding (as the agent turns it on)
      await sh(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
      await ipn("addr", "add", `${FX.localIp6}/64`, "dev", "ul0", "nodad");
      await ipn("-6", "route", "add", "blackhole", `${FX.blackholeNodeIp6}/128`);
      await ipn(
        "-6",
        "neigh",
        "replace",
        FX.remoteIp6,
        "lladdr",
        FX.remoteUnderlayMac,
        "dev",
        "ul0",
        "nud",
        "permanent",
      );
    }
    const ifindexOf = async (dev: string) =>
      (JSON.parse(await ipn("-json", "link", "show", dev)) as Array<{ ifindex: number }>)[0]!.ifindex;
    const underlayIfindex = await ifindexOf("ul0");
    const podIfindex = await ifindexOf(FX.podVeth);
    const overlayIfindex = await ifindexOf(FX.overlay);

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
    const subnets6 = o.map(MAPS.subnets6, subnet6KeyCodec, subnet6ValueCodec);
    const members6 = o.map(MAPS.members6, ip6KeyCodec, memberValueCodec);
    const nexthops6 = o.map(MAPS.nexthops6, ip6KeyCodec, nexthopValueCodec);
    const endpoints6 = o.map(MAPS.endpoints6, ip6KeyCodec, endpointValueCodec);

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
      ...(opts.ipv6
        ? {
            flags: CFG_READY | CFG_IPV6,
            v6: { localIp6: ip6Of(FX.localIp6), subnet6Len: 64, hopLimit: 64, overlayIfindex },
          }
        : {}),
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
    if (opts.ipv6) {
      const l6 = parseCidr6(FX.localSubnet6)!;
      const r6 = parseCidr6(FX.remoteSubnet6)!;
      subnets6.update(
        { prefixLen: l6.len, addr: l6.ip },
        { nodeIp6: ip6Of(FX.localIp6), vtepMac: FX.vtepMac, flags: SUBNET_LOCAL },
      );
      subnets6.update(
        { prefixLen: r6.len, addr: r6.ip },
        { nodeIp6: ip6Of(FX.remoteIp6), vtepMac: FX.remoteVtepMac, flags: 0 },
      );
      members6.update(ip6Of(FX.remoteIp6), 1);
    }

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
      subnets6,
      members6,
      nexthops6,
      endpoints6,
      underlayIfindex,
      overlayIfindex,
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
