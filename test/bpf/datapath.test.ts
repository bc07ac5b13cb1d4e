/**
 * The ebpf-vxlan datapath's pinned maps across agent runs and versions: a restarted
 * agent adopts the maps (and their contents) it pinned; maps pinned by an earlier
 * version with another layout (ABI 1: an LPM trie for the subnets, a 36-byte config)
 * are recreated with a log line instead of failing the start.
 */

import { dlopen, FFIType } from "bun:ffi";
import { afterEach, describe, expect, test } from "bun:test";
import { loadDatapath, mapPinDir } from "../../src/backend/ebpf-vxlan/datapath.ts";
import { MAPS } from "../../src/bpf/abi.ts";
import { closeFd } from "../../src/bpf/libbpf.ts";
import { isBpffs, pinFd, removePinDir } from "../../src/bpf/pin.ts";
import { createLogger } from "../../src/log.ts";

const BPF_MAP_TYPE_ARRAY = 2;
const BPF_MAP_TYPE_LPM_TRIE = 11;
const BPF_F_NO_PREALLOC = 1;

const libbpf = dlopen("libbpf.so.1", {
  bpf_map_create: {
    args: [FFIType.i32, FFIType.ptr, FFIType.u32, FFIType.u32, FFIType.u32, FFIType.ptr],
    returns: FFIType.i32,
  },
});

/** bpf_map_create() with only map_flags set in its options. */
function createMap(type: number, keySize: number, valueSize: number, maxEntries: number, flags = 0): number {
  const opts = new Uint8Array(64);
  const v = new DataView(opts.buffer);
  v.setBigUint64(0, 64n, true); // sz
  v.setUint32(28, flags, true); // map_flags
  const fd = libbpf.symbols.bpf_map_create(type, null, keySize, valueSize, maxEntries, opts);
  if (fd < 0) throw new Error(`bpf_map_create: ${fd}`);
  return fd;
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
    const subnets = createMap(BPF_MAP_TYPE_LPM_TRIE, 8, 12, 65536, BPF_F_NO_PREALLOC);
    const config = createMap(BPF_MAP_TYPE_ARRAY, 4, 36, 1);
    pinFd(subnets, `${mapPinDir(dir)}/${MAPS.subnets}`);
    pinFd(config, `${mapPinDir(dir)}/${MAPS.config}`);
    closeFd(subnets);
    closeFd(config);
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
