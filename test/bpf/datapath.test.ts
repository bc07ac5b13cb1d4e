/**
 * The ebpf-vxlan datapath's pinned maps across agent runs and versions: a restarted
 * agent adopts the maps (and their contents) it pinned; maps pinned by an earlier
 * version with another layout (ABI 1: an LPM trie for the subnets, a 36-byte config)
 * are recreated with a log line instead of failing the start. A load that fails at
 * any step leaves no fd behind (the agent's watchdog retries it every few seconds),
 * and neither does the CNI plugin's endpoint sink, which opens the pins. Our TC hooks
 * (tcx) hold our one program: kept, attached or replaced, never two of ours.
 */

import { dlopen, FFIType } from "bun:ffi";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { publishDatapath } from "../../src/backend/datapath-file.ts";
import { loadDatapath, mapPinDir } from "../../src/backend/ebpf-vxlan/datapath.ts";
import { createEbpfEndpointSink } from "../../src/backend/ebpf-vxlan/endpoint-sink.ts";
import { ensureTcIngress } from "../../src/backend/ebpf-vxlan/endpoint-sync.ts";
import { attachTc, detachTc } from "../../src/backend/ebpf-vxlan/hooks.ts";
import { MAPS, PROGRAMS } from "../../src/bpf/abi.ts";
import { objectId, tcQuery, tcxAttach, tcxQuery } from "../../src/bpf/attach.ts";
import { BpfFd } from "../../src/bpf/fd.ts";
import { offsetOf, optsBuffer } from "../../src/bpf/layout.ts";
import { isBpffs, pinFd, removePinDir } from "../../src/bpf/pin.ts";
import { LIBBPF_STRUCTS } from "../../src/bpf/structs.ts";
import { parseIp4 } from "../../src/config/cidr.ts";
import { createLogger } from "../../src/log.ts";
import { compileBpf, ensureObject, FX, OBJECT_PATH, setupHarness } from "./harness.ts";

const BPF_MAP_TYPE_ARRAY = 2;
const BPF_MAP_TYPE_LPM_TRIE = 11;
const BPF_F_NO_PREALLOC = 1;

const libbpf = dlopen("libbpf.so.1", {
  bpf_map_create: {
    args: [FFIType.i32, FFIType.ptr, FFIType.u32, FFIType.u32, FFIType.u32, FFIType.ptr],
    returns: FFIType.i32,
  },
});

const CREATE_OPTS = LIBBPF_STRUCTS.bpf_map_create_opts;

/** bpf_map_create() with only map_flags set in its options: an fd we own. */
function createMap(type: number, keySize: number, valueSize: number, maxEntries: number, flags = 0): BpfFd {
  const opts = optsBuffer(CREATE_OPTS);
  opts.view.setUint32(offsetOf(CREATE_OPTS, "map_flags"), flags, true);
  const fd = libbpf.symbols.bpf_map_create(type, null, keySize, valueSize, maxEntries, opts.bytes);
  if (fd < 0) throw new Error(`bpf_map_create: ${fd}`);
  return BpfFd.own(fd, "test map");
}

async function mapType(path: string): Promise<string> {
  const p = Bun.spawn(["bpftool", "-j", "map", "show", "pinned", path], { stdout: "pipe" });
  const info = (await new Response(p.stdout).json()) as { type: string };
  await p.exited;
  return info.type;
}

const dir = `/sys/fs/bpf/tartan-test-${process.pid}-dp`;
const lines: string[] = [];
const log = createLogger({ level: "debug", write: (l) => lines.push(l) });

afterEach(() => {
  removePinDir(dir);
  lines.length = 0;
});

describe("pinned maps across runs", () => {
  test("a restart adopts the pinned maps with their contents; the subnet map is a hash", async () => {
    if (!isBpffs("/sys/fs/bpf")) throw new Error("/sys/fs/bpf is not mounted (mount -t bpf bpf /sys/fs/bpf)");
    const first = await loadDatapath(dir, log);
    expect(first.adopted).toBe(false);
    const key = { prefixLen: 24, addr: 0xc6130200 };
    const value = { nodeIp: 0xc6120002, vtepMac: "0a:00:00:00:00:02", flags: 0 };
    first.subnets.update(key, value);
    first.close();
    expect(await mapType(`${mapPinDir(dir)}/${MAPS.subnets}`)).toBe("hash");

    const again = await loadDatapath(dir, log);
    expect(again.adopted).toBe(true);
    expect(again.subnets.lookup(key)).toEqual(value);
    again.close();
    expect(lines.join("\n")).not.toContain("recreating");
  });

  test("maps pinned by ABI 1 (LPM trie subnets, 36-byte config) are recreated with a log line", async () => {
    {
      using subnets = createMap(BPF_MAP_TYPE_LPM_TRIE, 8, 12, 65536, BPF_F_NO_PREALLOC);
      using config = createMap(BPF_MAP_TYPE_ARRAY, 4, 36, 1);
      pinFd(subnets.fd, `${mapPinDir(dir)}/${MAPS.subnets}`);
      pinFd(config.fd, `${mapPinDir(dir)}/${MAPS.config}`);
    }
    expect(await mapType(`${mapPinDir(dir)}/${MAPS.subnets}`)).toBe("lpm_trie");

    const dp = await loadDatapath(dir, log);
    try {
      expect(lines.join("\n")).toContain("pinned maps do not fit this version's layout; recreating them");
      expect(await mapType(`${mapPinDir(dir)}/${MAPS.subnets}`)).toBe("hash");
      const key = { prefixLen: 24, addr: 0xc6130300 };
      dp.subnets.update(key, { nodeIp: 0xc6120003, vtepMac: "0a:00:00:00:00:03", flags: 0 });
      expect(dp.subnets.keys()).toEqual([key]);
    } finally {
      dp.close();
    }
  });
});

function openFds(): number {
  return readdirSync("/proc/self/fd").length;
}

/** A one-program object that has none of tartan's maps. */
const NO_MAPS = `#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
SEC("xdp") int tartan_only(struct xdp_md *ctx) { return XDP_PASS; }
char LICENSE[] SEC("license") = "GPL";
`;

describe("a load that fails partway closes what it opened", () => {
  let full: Uint8Array;
  let encapOnly: Uint8Array;
  beforeAll(async () => {
    await ensureObject();
    full = await Bun.file(OBJECT_PATH).bytes();
    // one of the objects build/tartan.bpf.o is linked from: the maps and the encap programs only
    encapOnly = await Bun.file(join(dirname(OBJECT_PATH), "bpf", "encap.bpf.o")).bytes();
  });

  const notBpffs = join(tmpdir(), `tartan-test-${process.pid}-not-bpffs`);
  afterEach(() => rmSync(notBpffs, { recursive: true, force: true }));

  /** Runs `load`, expects it to fail with `message`, and the fd count to be what it was. */
  async function failsClean(load: () => Promise<unknown>, message: string): Promise<void> {
    const before = openFds();
    let err: unknown = null;
    try {
      await load();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toContain(message);
    expect(openFds()).toBe(before);
  }

  test("at every step, and the next load still succeeds", async () => {
    if (!isBpffs("/sys/fs/bpf")) throw new Error("/sys/fs/bpf is not mounted (mount -t bpf bpf /sys/fs/bpf)");
    // once, so that libbpf and its log callback are open before counting
    (await loadDatapath(dir, log, { object: full })).close();
    removePinDir(dir);

    // 1. the pin directory is not on a bpffs: nothing opened yet
    await failsClean(() => loadDatapath(notBpffs, log, { object: full }), "is not on a BPF filesystem");
    // 2. open: not an ELF object
    await failsClean(
      () => loadDatapath(dir, log, { object: new Uint8Array(4096).fill(0x5a) }),
      "open BPF object tartan: LIBBPF_ERRNO__FORMAT",
    );
    // 3. binding pins before load: the object has no such map
    const noMaps = compileBpf(NO_MAPS);
    await failsClean(
      () => loadDatapath(dir, log, { object: noMaps }),
      `map ${MAPS.subnets} not in the object`,
    );
    // 4. load: a pinned map of another layout, and no subnet pin to adopt (so no retry)
    {
      using config = createMap(BPF_MAP_TYPE_ARRAY, 4, 36, 1);
      pinFd(config.fd, `${mapPinDir(dir)}/${MAPS.config}`);
    }
    await failsClean(() => loadDatapath(dir, log, { object: full }), "load BPF object");
    removePinDir(dir);
    // 5. after load: a program the object lacks (maps created and pinned, two programs pinned)
    await failsClean(
      () => loadDatapath(dir, log, { object: encapOnly }),
      `program ${PROGRAMS.decapTc} not in the object`,
    );
    removePinDir(dir);
    // 6. pinning a program: something that is not a directory sits where progs/ goes
    {
      using blocker = createMap(BPF_MAP_TYPE_ARRAY, 4, 4, 1);
      pinFd(blocker.fd, `${dir}/progs`);
    }
    await failsClean(() => loadDatapath(dir, log, { object: full }), `${dir}/progs`);
    removePinDir(dir);

    const before = openFds();
    const dp = await loadDatapath(dir, log, { object: full });
    expect(openFds()).toBeGreaterThan(before);
    dp.close();
    expect(openFds()).toBe(before);
    expect(() => dp.progFd("decapTc")).toThrow("used after its BPF object tartan was closed");
    expect(() => dp.subnets.keys()).toThrow("used after its BPF object tartan was closed");
  });
});

describe("the CNI endpoint sink", () => {
  const sinkDir = `/sys/fs/bpf/tartan-test-${process.pid}-sink`;
  const sinkRun = mkdtempSync(join(tmpdir(), "tartan-sink-"));
  afterEach(() => removePinDir(sinkDir));
  afterAll(() => rmSync(sinkRun, { recursive: true, force: true }));

  test("adds a pod through the pins (the pod program on its veth, encap on a new bridge) and removes it, holding no fd after", async () => {
    const h = await setupHarness();
    try {
      const ipn = (...a: string[]) => Bun.spawnSync(["ip", "-n", h.ns, ...a], { stderr: "pipe" });
      expect(ipn("link", "add", "br-sink", "type", "bridge").exitCode).toBe(0);
      expect(ipn("link", "set", "br-sink", "up").exitCode).toBe(0);
      const [br] = JSON.parse(ipn("-j", "link", "show", "br-sink").stdout.toString()) as Array<{
        ifindex: number;
        address: string;
      }>;
      const dp = await loadDatapath(sinkDir, log, { object: await Bun.file(OBJECT_PATH).bytes() });
      try {
        // the plugin finds the pins through the file the agent writes next to subnet.env
        const subnetFile = join(sinkRun, "subnet.env");
        publishDatapath(subnetFile, { backend: "ebpf-vxlan", node: "sink", bpffs: sinkDir });
        const said: string[] = [];
        const sinkLog = createLogger({ level: "debug", write: (l) => said.push(l) });
        const sink = createEbpfEndpointSink({ conf: { subnetFile }, log: sinkLog });
        const podIp = "198.19.1.77";
        const ep = {
          ip: podIp,
          ifindex: h.podIfindex,
          hostVeth: FX.podVeth,
          mac: "02:AA:00:00:00:77",
          containerId: "sink-test",
          ifname: "eth0",
          netns: "/var/run/netns/none",
          bridge: "br-sink",
        };
        const before = openFds();
        await sink.add(ep);
        expect(openFds()).toBe(before);
        // through tcx (no clsact qdisc on the bridge or the veth: creating one stalls the device)
        expect(tcxQuery(br!.ifindex, "br-sink", "ingress")).toEqual([objectId(dp.progFd("encapFwd"))]);
        expect(tcQuery(br!.ifindex, "br-sink", "ingress")).toBeNull();
        // the send fast path from the pod's first packet on
        expect(tcxQuery(h.podIfindex, FX.podVeth, "ingress")).toEqual([objectId(dp.progFd("encapPod"))]);
        expect(tcQuery(h.podIfindex, FX.podVeth, "ingress")).toBeNull();
        expect(said.filter((l) => /level=(warn|error)/.test(l))).toEqual([]);
        expect(dp.endpoints.lookup(parseIp4(podIp)!)).toEqual({
          ifindex: h.podIfindex,
          podMac: "02:aa:00:00:00:77",
          gwMac: br!.address,
        });
        await sink.remove(podIp);
        expect(openFds()).toBe(before);
        expect(dp.endpoints.lookup(parseIp4(podIp)!)).toBeNull();
      } finally {
        dp.close();
      }
    } finally {
      await h.close();
    }
  });
});

describe("our one program on a TC hook (tcx)", () => {
  test("attachTc keeps the given program when it is there beside another of ours; ensureTcIngress keeps, replaces, attaches", async () => {
    const h = await setupHarness();
    try {
      const ifx = h.podIfindex;
      const veth = FX.podVeth;
      const ref = (fd: number) => ({ fd, id: objectId(fd) });
      const [pod, fwd] = [ref(h.prog.encapPod), ref(h.prog.encapFwd)];
      // two of ours on one hook (the CNI plugin and a restarted agent attaching at once)
      tcxAttach(ifx, veth, "ingress", fwd.fd);
      tcxAttach(ifx, veth, "ingress", pod.fd);
      expect(tcxQuery(ifx, veth, "ingress")).toEqual([pod.id, fwd.id]);
      attachTc(ifx, veth, "ingress", fwd.fd);
      expect(tcxQuery(ifx, veth, "ingress")).toEqual([fwd.id]);
      expect(ensureTcIngress(ifx, veth, fwd)).toBe("kept");
      expect(ensureTcIngress(ifx, veth, pod)).toBe("replaced");
      expect(tcxQuery(ifx, veth, "ingress")).toEqual([pod.id]);
      expect(detachTc(ifx, veth, "ingress")).toBe(true);
      expect(ensureTcIngress(ifx, veth, pod)).toBe("attached");
      expect(tcxQuery(ifx, veth, "ingress")).toEqual([pod.id]);
      // never through clsact
      expect(tcQuery(ifx, veth, "ingress")).toBeNull();
      expect(detachTc(ifx, veth, "ingress")).toBe(true);
      expect(detachTc(ifx, veth, "ingress")).toBe(false);
    } finally {
      await h.close();
    }
  });
});
