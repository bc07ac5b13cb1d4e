/**
 * The loader through bun:ffi: a verifier rejection carries the verifier log; typed
 * maps (lookup/update/delete/keys/entries/batch, per-CPU); pins; TC and XDP attach,
 * query, atomic replace and detach on a veth in the harness's private namespace.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ip4KeyCodec, MAPS, memberValueCodec } from "../../src/bpf/abi.ts";
import {
  objectId,
  programName,
  tcAttach,
  tcDetach,
  tcQuery,
  tcxAttach,
  tcxDetach,
  tcxQuery,
  xdpAttach,
  xdpDetach,
  xdpQuery,
} from "../../src/bpf/attach.ts";
import { BpfError } from "../../src/bpf/errors.ts";
import { closeFd } from "../../src/bpf/libbpf.ts";
import { BpfMap } from "../../src/bpf/map.ts";
import { BpfObject } from "../../src/bpf/object.ts";
import { isBpffs, openPin, pinFd, unpin } from "../../src/bpf/pin.ts";
import { createLogger } from "../../src/log.ts";
import { type Harness, setupHarness } from "./harness.ts";

let h: Harness;
beforeAll(async () => {
  h = await setupHarness();
});
afterAll(async () => {
  await h?.close();
});

const BAD_PROGRAM = `
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
SEC("xdp")
int reads_past_the_end(struct xdp_md *ctx)
{
	unsigned char *data = (void *)(long)ctx->data;
	return data[100]; /* no bounds check: the verifier must refuse this */
}
char LICENSE[] SEC("license") = "GPL";
`;

describe("object", () => {
  test("a verifier rejection is a BpfError carrying the verifier log, and libbpf's log reaches the logger", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tartan-bad-"));
    try {
      await Bun.write(join(dir, "bad.c"), BAD_PROGRAM);
      const cc = Bun.spawnSync(
        [
          "clang-19",
          "-O2",
          "-g",
          "-target",
          "bpf",
          "-I/usr/include/x86_64-linux-gnu",
          "-c",
          join(dir, "bad.c"),
          "-o",
          join(dir, "bad.o"),
        ],
        { stderr: "pipe" },
      );
      expect(cc.exitCode).toBe(0);
      const lines: string[] = [];
      const log = createLogger({ level: "debug", write: (l) => lines.push(l) });
      const obj = BpfObject.open(await Bun.file(join(dir, "bad.o")).bytes(), { name: "bad", log });
      let err: unknown = null;
      try {
        obj.load();
      } catch (e) {
        err = e;
      } finally {
        obj.close();
      }
      expect(err).toBeInstanceOf(BpfError);
      const e = err as BpfError;
      expect(e.op).toBe("load BPF object");
      expect(e.verifierLog).toContain("invalid access to packet");
      expect(lines.some((l) => l.includes("level=warn") && l.includes("libbpf"))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("without privileges the error is one line telling the operator what to grant", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tartan-perm-"));
    try {
      chmodSync(dir, 0o755);
      const script = join(dir, "load.ts");
      await Bun.write(
        script,
        `import { BpfObject } from ${JSON.stringify(`${import.meta.dir}/../../src/bpf/object.ts`)};
try {
  const o = BpfObject.open(await Bun.file(${JSON.stringify(`${import.meta.dir}/../../build/tartan.bpf.o`)}).bytes());
  o.load();
  console.log("loaded");
} catch (e) {
  console.log(\`\${(e as Error).name}: \${(e as Error).message}\`);
}
`,
      );
      chmodSync(script, 0o644);
      const p = Bun.spawnSync(
        [
          // root's uid (so the checkout stays readable wherever it is) without any capability
          "setpriv",
          "--inh-caps=-all",
          "--bounding-set=-all",
          process.execPath,
          script,
        ],
        { stdout: "pipe", stderr: "pipe" },
      );
      const out = p.stdout.toString().trim();
      expect(out.split("\n")).toHaveLength(1);
      expect(out).toStartWith(
        "BpfUnavailableError: load BPF object: EPERM: run tartan as root, or grant CAP_BPF, CAP_NET_ADMIN",
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("unknown programs and maps are errors naming them", () => {
    expect(() => h.obj.programFd("nope")).toThrow("program nope not in the object");
    expect(() => h.obj.mapFd("nope")).toThrow("map nope not in the object");
  });
});

describe("maps", () => {
  test("update, lookup, keys, entries, delete", () => {
    const m = h.members;
    m.update(0x0a000001, 3);
    expect(m.lookup(0x0a000001)).toBe(3);
    expect(m.keys()).toContain(0x0a000001);
    expect(new Map(m.entries()).get(0x0a000001)).toBe(3);
    expect(m.delete(0x0a000001)).toBe(true);
    expect(m.delete(0x0a000001)).toBe(false);
    expect(m.lookup(0x0a000001)).toBeNull();
  });

  test("batch update writes every entry, in both hashes", () => {
    const entries = Array.from({ length: 500 }, (_, i) => [(0x0b000000 + i) >>> 0, i + 1] as const);
    expect(h.members.updateBatch(entries)).toBe(500);
    for (const [k, v] of entries) expect(h.members.lookup(k)).toBe(v);
    for (const [k] of entries) h.members.delete(k);
    const subnets = Array.from(
      { length: 300 },
      (_, i) =>
        [
          { prefixLen: 24, addr: (0x0c000000 + i * 256) >>> 0 },
          { nodeIp: (0xc6120000 + i) >>> 0, vtepMac: "0a:00:00:00:01:02", flags: 0 },
        ] as const,
    );
    expect(h.subnets.updateBatch(subnets)).toBe(300);
    for (const [k, v] of subnets) expect(h.subnets.lookup(k)).toEqual(v);
    for (const [k] of subnets) h.subnets.delete(k);
  });

  test("batch delete removes every key, and counts only those that were there", () => {
    const entries = Array.from({ length: 200 }, (_, i) => [(0x0e000000 + i) >>> 0, 1] as const);
    h.members.updateBatch(entries);
    const keys = entries.map(([k]) => k);
    expect(h.members.deleteBatch(keys.slice(0, 100))).toBe(100);
    // a missing key in the middle: the kernel stops there; the rest still goes
    expect(h.members.deleteBatch([keys[150]!, keys[0]!, ...keys.slice(100, 150), ...keys.slice(151)])).toBe(
      100,
    );
    for (const k of keys) expect(h.members.lookup(k)).toBeNull();
    expect(h.members.deleteBatch([])).toBe(0);
  });

  test("a MAC that is not aa:bb:cc:dd:ee:ff is refused by the codec", () => {
    const key = { prefixLen: 24, addr: 0x0c000000 };
    for (const mac of ["0a:00:00:00:00", "0a-00-00-00-00-02", "0a:00:00:00:00:0g", "0a:00:00:00:00:022"])
      expect(() => h.subnets.update(key, { nodeIp: 1, vtepMac: mac, flags: 0 })).toThrow("not a MAC address");
    h.subnets.update(key, { nodeIp: 1, vtepMac: "0A:bC:00:00:00:02", flags: 0 });
    expect(h.subnets.lookup(key)!.vtepMac).toBe("0a:bc:00:00:00:02");
    h.subnets.delete(key);
  });

  test("per-CPU lookup returns one value per CPU", () => {
    const per = h.counters.lookupPerCpu(0)!;
    expect(per.length).toBeGreaterThanOrEqual(1);
    expect(typeof per[0]).toBe("bigint");
    expect(() => h.counters.lookup(0)).toThrow("per-CPU");
  });
});

describe("pins", () => {
  test("pin a map, open it again from bpffs, see the same contents", () => {
    if (!isBpffs("/sys/fs/bpf")) throw new Error("/sys/fs/bpf is not mounted (mount -t bpf bpf /sys/fs/bpf)");
    const path = `/sys/fs/bpf/tartan-test-${process.pid}-members`;
    pinFd(h.members.fd, path);
    try {
      h.members.update(0x0d000001, 7);
      const fd = openPin(path)!;
      const again = new BpfMap(MAPS.members, fd, ip4KeyCodec, memberValueCodec);
      expect(again.lookup(0x0d000001)).toBe(7);
      expect(objectId(fd)).toBe(objectId(h.members.fd));
      again.close();
      h.members.delete(0x0d000001);
    } finally {
      unpin(path);
    }
    expect(openPin(path)).toBeNull();
  });
});

describe("attach", () => {
  const log = createLogger({ write: () => {} });
  test("tc: attach, query, replace atomically, detach", () => {
    const ifx = h.underlayIfindex;
    expect(tcQuery(ifx, "ul0", "ingress")).toBeNull();
    tcAttach(ifx, "ul0", "ingress", h.prog.decapTc);
    expect(tcQuery(ifx, "ul0", "ingress")).toBe(objectId(h.prog.decapTc));
    expect(programName(objectId(h.prog.decapTc))).toBe("tartan_decap_tc");
    tcAttach(ifx, "ul0", "ingress", h.prog.encapFwd);
    expect(tcQuery(ifx, "ul0", "ingress")).toBe(objectId(h.prog.encapFwd));
    expect(tcDetach(ifx, "ul0", "ingress")).toBe(true);
    expect(tcQuery(ifx, "ul0", "ingress")).toBeNull();
    expect(tcDetach(ifx, "ul0", "ingress")).toBe(false);
  });

  test("tcx: attach without a qdisc, query, replace atomically, detach", async () => {
    const ifx = h.underlayIfindex;
    const decap = objectId(h.prog.decapTc);
    const fwd = objectId(h.prog.encapFwd);
    const qdiscs = () =>
      Bun.spawnSync(["tc", "qdisc", "show", "dev", "ul1"], { stdout: "pipe" }).stdout.toString();
    const before = qdiscs();
    const ul1 = (
      JSON.parse(
        Bun.spawnSync(["ip", "-j", "link", "show", "ul1"], { stdout: "pipe" }).stdout.toString(),
      ) as {
        ifindex: number;
      }[]
    )[0]!.ifindex;
    expect(tcxQuery(ifx, "ul0", "ingress")).toEqual([]);
    tcxAttach(ifx, "ul0", "ingress", h.prog.decapTc);
    expect(tcxQuery(ifx, "ul0", "ingress")).toEqual([decap]);
    tcxAttach(ifx, "ul0", "ingress", h.prog.decapTc); // the same program again: already there
    expect(tcxQuery(ifx, "ul0", "ingress")).toEqual([decap]);
    tcxAttach(ifx, "ul0", "ingress", h.prog.encapFwd, decap);
    expect(tcxQuery(ifx, "ul0", "ingress")).toEqual([fwd]);
    expect(tcxQuery(ifx, "ul0", "egress")).toEqual([]);
    tcxAttach(ul1, "ul1", "egress", h.prog.encapHost);
    // no qdisc was created on a device that had none (creating clsact stalls the device)
    expect(qdiscs()).toBe(before);
    expect(qdiscs()).not.toContain("clsact");
    expect(tcxDetach(ul1, "ul1", "egress", objectId(h.prog.encapHost))).toBe(true);
    expect(tcxDetach(ifx, "ul0", "ingress", fwd)).toBe(true);
    expect(tcxQuery(ifx, "ul0", "ingress")).toEqual([]);
    expect(tcxDetach(ifx, "ul0", "ingress", fwd)).toBe(false);
  });

  test("xdp: native on a veth, query, detach", () => {
    const ifx = h.underlayIfindex;
    expect(xdpAttach(ifx, "ul0", h.prog.decapXdp, "native", log)).toBe("native");
    expect(xdpQuery(ifx, "ul0", "native")).toBe(objectId(h.prog.decapXdp));
    xdpDetach(ifx, "ul0");
    expect(xdpQuery(ifx, "ul0", "native")).toBeNull();
  });

  test("attaching to a missing interface is a BpfError", () => {
    expect(() => tcAttach(999_999, "ghost0", "ingress", h.prog.decapTc)).toThrow(BpfError);
  });
});

test("closing an fd twice is harmless for the caller", () => {
  closeFd(-1);
});
