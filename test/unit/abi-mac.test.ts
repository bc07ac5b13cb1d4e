/**
 * MAC text in the map codecs (src/bpf/abi.ts): decoded as one string per MAC, lower-case
 * hex with leading zeros, from any offset of a view; encode and decode are inverses.
 */
import { describe, expect, test } from "bun:test";
import { macString, subnet6ValueCodec, subnetValueCodec } from "../../src/bpf/abi.ts";

describe("MACs in the map values", () => {
  test("macString: every byte value, two lower-case digits each, from a subarray", () => {
    const bytes = new Uint8Array(256 + 8);
    for (let i = 0; i < bytes.length; i++) bytes[i] = i & 255;
    for (let at = 0; at + 6 <= 256; at += 7) {
      const want = Array.from(bytes.subarray(at, at + 6), (x) => x.toString(16).padStart(2, "0")).join(":");
      expect(macString(bytes.subarray(at, at + 6))).toBe(want);
    }
    expect(macString(new Uint8Array([0, 0x0a, 0xaf, 0xf0, 0xff, 1]))).toBe("00:0a:af:f0:ff:01");
  });

  test("subnet values (IPv4 and IPv6): decode(encode(v)) is v, at an offset too", () => {
    for (const mac of ["0e:7a:00:00:05:01", "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00", "a0:b1:c2:d3:e4:f5"]) {
      const v4 = { nodeIp: 0xc6120001, vtepMac: mac, flags: 1 };
      const b4 = new DataView(new ArrayBuffer(subnetValueCodec.size + 3));
      subnetValueCodec.encode(v4, b4, 3);
      expect(subnetValueCodec.decode(b4, 3)).toEqual(v4);
      const b6 = new DataView(new ArrayBuffer(subnet6ValueCodec.size));
      const v6 = subnet6ValueCodec.decode(b6, 0);
      const w6 = { ...v6, vtepMac: mac };
      subnet6ValueCodec.encode(w6, b6, 0);
      expect(subnet6ValueCodec.decode(b6, 0)).toEqual(w6);
    }
  });

  test("upper-case input is written as the same bytes and read back in lower case", () => {
    const b = new DataView(new ArrayBuffer(subnetValueCodec.size));
    subnetValueCodec.encode({ nodeIp: 1, vtepMac: "0E:7A:AB:CD:EF:01", flags: 0 }, b, 0);
    expect(subnetValueCodec.decode(b, 0).vtepMac).toBe("0e:7a:ab:cd:ef:01");
  });
});
