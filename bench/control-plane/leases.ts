/**
 * The benchmark's fake cluster: N leases in flannel's exact JSON, one per node, in a
 * network sized for N. Up to 16,383 leases: 198.19.0.0/16 in /30s (the pod range, so the
 * datapath backends can program them). Beyond that no flannel network fits the test
 * ranges (SubnetLen is at most 30), so the 50,000 case uses 10.0.0.0/8 in /24s with the
 * `alloc` backend, which configures nothing in the kernel: those addresses exist only as
 * registry data. Node IPs are 198.18.x.y and are never contacted.
 */
import { cidrToKey, type Ip4 } from "../../src/config/cidr.ts";
import { encodeLeaseValue } from "../../src/lease/lease.ts";

export interface BenchNetwork {
  readonly json: string;
  readonly base: Ip4;
  readonly subnetLen: number;
  /** The kernel backends can program it (inside the pod range). */
  readonly datapath: boolean;
}

/** Most leases 198.19.0.0/16 holds at SubnetLen 30, less the first subnet flannel skips. */
export const POD_RANGE_LEASES = 16_383;

export function benchNetwork(n: number): BenchNetwork {
  if (n <= POD_RANGE_LEASES - 8)
    return {
      // the agents take their own subnets from the last 8, which no fake lease uses
      json: JSON.stringify({
        Network: "198.19.0.0/16",
        SubnetLen: 30,
        SubnetMin: "198.19.255.224",
        Backend: { Type: "vxlan" },
      }),
      base: 0xc6130000,
      subnetLen: 30,
      datapath: true,
    };
  return {
    json: JSON.stringify({
      Network: "10.0.0.0/8",
      SubnetLen: 24,
      SubnetMin: "10.255.248.0",
      Backend: { Type: "vxlan" },
    }),
    base: 0x0a000000,
    subnetLen: 24,
    datapath: false,
  };
}

/** Lease i (0-based) of the fake cluster; `generation` changes its VTEP MAC (a rewrite that must be programmed). */
export function benchLease(net: BenchNetwork, i: number, generation = 0): { key: string; value: string } {
  // index 0 of the network is skipped, as flannel skips the first subnet
  const subnet = { ip: (net.base + (i + 1) * 2 ** (32 - net.subnetLen)) >>> 0, len: net.subnetLen };
  const host = i + 10;
  const publicIp = (0xc6120000 + (host >>> 8) * 256 + (host & 255)) >>> 0;
  const hex = (x: number) => (x & 255).toString(16).padStart(2, "0");
  const mac = `0e:${hex(0xa0 + generation)}:${hex(i >>> 16)}:${hex(i >>> 8)}:${hex(i)}:01`;
  return {
    key: cidrToKey(subnet),
    value: encodeLeaseValue({ publicIp, backendType: "vxlan", vxlan: { VNI: 1, VtepMAC: mac } }),
  };
}
