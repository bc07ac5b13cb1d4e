/**
 * The loader through bun:ffi: a verifier rejection carries the verifier log; errnos
 * come from libbpf's return values; typed maps (lookup/update/delete/keys/entries/
 * batch, per-CPU); pins; owned and borrowed fds and use after close; TC and XDP
 * attach, query, atomic replace and detach on a veth in the harness's private namespace.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readdirSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ip4KeyCodec, MAPS, memberValueCodec, PROGRAMS, u32Codec } from "../../src/bpf/abi.ts";
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
import { BpfError, ERRNO } from "../../src/bpf/errors.ts";
import { BpfMap } from "../../src/bpf/map.ts";
import { BpfObject } from "../../src/bpf/object.ts";
import { isBpffs, openPin, pinFd, unpin } from "../../src/bpf/pin.ts";
import { createLogger } from "../../src/log.ts";
import { compileBpf, type Harness, OBJECT_PATH, setupHarness } from "./harness.ts";

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
  test("a verifier rejection is a BpfError carrying the verifier log, and libbpf's log reaches the logger", () => {
    const lines: string[] = [];
    const log = createLogger({ level: "debug", write: (l) => lines.push(l) });
    let err: unknown = null;
    try {
      using obj = BpfObject.open(compileBpf(BAD_PROGRAM), { name: "bad", log });
      obj.load();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BpfError);
    const e = err as BpfError;
    expect(e.op).toBe("load BPF object");
    expect(e.verifierLog).toContain("invalid access to packet");
    expect(lines.some((l) => l.includes("level=warn") && l.includes("libbpf"))).toBe(true);
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
    expect(() => h.obj.program("nope")).toThrow("program nope not in the object");
    expect(() => h.obj.map("nope", u32Codec, u32Codec)).toThrow("map nope not in the object");
  });

  test("a failed open is a BpfError whose errno is libbpf's own return value", () => {
    // not an ELF file: libbpf answers -LIBBPF_ERRNO__FORMAT through the skeleton open
    const garbage = new Uint8Array(4096).fill(0x5a);
    let err: unknown = null;
    try {
      BpfObject.open(garbage, { name: "garbage" }).close();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BpfError);
    expect((err as BpfError).errno).toBe(ERRNO.LIBBPF_ERRNO__FORMAT);
    expect((err as BpfError).message).toStartWith("open BPF object garbage: LIBBPF_ERRNO__FORMAT");
    // empty: refused before libbpf (which would then open a file named after the object)
    expect(() => BpfObject.open(new Uint8Array(0), { name: "empty" })).toThrow(
      "open BPF object empty: no bytes",
    );
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
  test("pin a map, open it again from bpffs (an fd of our own), see the same contents", () => {
    if (!isBpffs("/sys/fs/bpf")) throw new Error("/sys/fs/bpf is not mounted (mount -t bpf bpf /sys/fs/bpf)");
    const path = `/sys/fs/bpf/tartan-test-${process.pid}-members`;
    pinFd(h.members.fd, path);
    try {
      h.members.update(0x0d000001, 7);
      const again = BpfMap.openPinned(path, ip4KeyCodec, memberValueCodec)!;
      expect(again.name).toBe(`tartan-test-${process.pid}-members`);
      expect(again.owned).toBe(true);
      expect(again.lookup(0x0d000001)).toBe(7);
      expect(objectId(again.fd)).toBe(objectId(h.members.fd));
      expect(again.fd).not.toBe(h.members.fd);
      const fd = again.fd;
      again.close();
      expect(fdTarget(fd)).not.toBe("anon_inode:bpf-map");
      // the object's own map is untouched by closing the pin's fd
      expect(h.members.lookup(0x0d000001)).toBe(7);
      h.members.delete(0x0d000001);
    } finally {
      unpin(path);
    }
    expect(openPin(path)).toBeNull();
    expect(BpfMap.openPinned(path, ip4KeyCodec, memberValueCodec)).toBeNull();
  });
});

/** What /proc/self/fd/N points at, or null when N is not open. */
function fdTarget(fd: number): string | null {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return null;
  }
}

function openFds(): number {
  return readdirSync("/proc/self/fd").length;
}

describe("ownership", () => {
  test("an owned handle closes its fd once; any use after close() throws EBADF", () => {
    const path = `/sys/fs/bpf/tartan-test-${process.pid}-owned`;
    pinFd(h.members.fd, path);
    try {
      const m = BpfMap.openPinned(path, ip4KeyCodec, memberValueCodec)!;
      const fd = m.fd;
      expect(fdTarget(fd)).toBe("anon_inode:bpf-map");
      m.close();
      expect(m.closed).toBe(true);
      expect(fdTarget(fd)).toBeNull();
      m.close(); // idempotent: no second close(2) of a number someone else may hold now
      expect(() => m.lookup(1)).toThrow(`map tartan-test-${process.pid}-owned at ${path} used after close()`);
      let err: unknown = null;
      try {
        m.update(1, 1);
      } catch (e) {
        err = e;
      }
      expect(err instanceof BpfError && err.is("EBADF")).toBe(true);
    } finally {
      unpin(path);
    }
  });

  test("closing a borrowed map ends the borrow but leaves the object's fd open", () => {
    const view = h.obj.map(MAPS.members, ip4KeyCodec, memberValueCodec);
    expect(view.owned).toBe(false);
    const fd = view.fd;
    view.close();
    expect(view.closed).toBe(true);
    expect(() => view.lookup(1)).toThrow("map tartan_members used after close()");
    expect(fdTarget(fd)).toBe("anon_inode:bpf-map");
    h.members.update(0x0d000002, 2);
    expect(h.members.lookup(0x0d000002)).toBe(2);
    h.members.delete(0x0d000002);
  });

  test("closing an object closes every handle it lent, and every fd it opened", async () => {
    const bytes = await Bun.file(OBJECT_PATH).bytes();
    const before = openFds();
    const obj = BpfObject.open(bytes, { name: "lender" });
    obj.load();
    const m = obj.map(MAPS.members, ip4KeyCodec, memberValueCodec);
    const prog = obj.program(PROGRAMS.decapTc);
    m.update(1, 1);
    expect(openFds()).toBeGreaterThan(before);
    obj.close();
    obj.close();
    expect(openFds()).toBe(before);
    expect(m.closed && prog.closed).toBe(true);
    expect(() => m.lookup(1)).toThrow("map tartan_members used after its BPF object lender was closed");
    expect(() => prog.fd).toThrow("program tartan_decap_tc used after its BPF object lender was closed");
    expect(() => obj.program(PROGRAMS.decapTc)).toThrow("BPF object lender used after close()");
  });

  test("`using` closes at the end of the scope, also when the scope throws", async () => {
    const bytes = await Bun.file(OBJECT_PATH).bytes();
    const before = openFds();
    let lent: BpfMap<number, number> | null = null;
    expect(() => {
      using obj = BpfObject.open(bytes, { name: "scoped" });
      obj.load();
      lent = obj.map(MAPS.members, ip4KeyCodec, memberValueCodec);
      throw new Error("leaving the scope");
    }).toThrow("leaving the scope");
    expect(openFds()).toBe(before);
    expect(lent!.closed).toBe(true);
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
      ) as { ifindex: number }[]
    )[0]!.ifindex;
    expect(tcxQuery(ifx, "ul0", "ingress")).toEqual([]);
    tcxAttach(ifx, "ul0", "ingress", h.prog.decapTc);
    expect(tcxQuery(ifx, "ul0", "ingress")).toEqual([decap]);
    tcxAttach(ifx, "ul0", "ingress", h.prog.decapTc); // the same program again: already there
    expect(tcxQuery(ifx, "ul0", "ingress")).toEqual([decap]);
    tcxAttach(ifx, "ul0", "ingress", h.prog.encapFwd, decap);
    expect(tcxQuery(ifx, "ul0", "ingress")).toEqual([fwd]);
    // without a program to replace, a new one goes first in run order (BPF_F_BEFORE)
    tcxAttach(ifx, "ul0", "ingress", h.prog.decapTc);
    expect(tcxQuery(ifx, "ul0", "ingress")).toEqual([decap, fwd]);
    expect(tcxDetach(ifx, "ul0", "ingress", decap)).toBe(true);
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
