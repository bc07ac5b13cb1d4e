/**
 * BPF_PROG_TEST_RUN through bpf_prog_test_run_opts: run a loaded program on a packet
 * without attaching it and get the verdict, the packet as the program left it, and
 * (for TC programs) the __sk_buff context. Used by test/bpf and by `bench`.
 */
import { check } from "./errors.ts";
import { addr, lib } from "./libbpf.ts";

const OPTS_SIZE = 80;
/** sizeof(struct __sk_buff) */
export const SKB_CTX_SIZE = 192;
const SKB_IFINDEX = 40;
const SKB_INGRESS_IFINDEX = 36;
const SKB_GSO_SEGS = 164;
const SKB_GSO_SIZE = 176;

export interface SkbCtx {
  readonly ifindex?: number;
  readonly ingressIfindex?: number;
  readonly gsoSegs?: number;
  readonly gsoSize?: number;
}

export interface TestRunInput {
  readonly data: Uint8Array;
  /** Room for the packet out (default: input + 256). */
  readonly dataOutSize?: number;
  /** A __sk_buff for TC programs. */
  readonly skb?: SkbCtx;
  readonly repeat?: number;
}

export interface TestRunResult {
  readonly retval: number;
  readonly data: Uint8Array;
  /** Average ns per run as the kernel measured it. */
  readonly durationNs: number;
}

export function skbCtx(c: SkbCtx): Uint8Array {
  const b = new Uint8Array(SKB_CTX_SIZE);
  const v = new DataView(b.buffer);
  if (c.ifindex !== undefined) v.setUint32(SKB_IFINDEX, c.ifindex, true);
  if (c.ingressIfindex !== undefined) v.setUint32(SKB_INGRESS_IFINDEX, c.ingressIfindex, true);
  if (c.gsoSegs !== undefined) v.setUint32(SKB_GSO_SEGS, c.gsoSegs, true);
  if (c.gsoSize !== undefined) v.setUint32(SKB_GSO_SIZE, c.gsoSize, true);
  return b;
}

/** Runs program `progFd` once (or `repeat` times) on `input.data`. */
export function testRun(progFd: number, input: TestRunInput): TestRunResult {
  const out = new Uint8Array(input.dataOutSize ?? input.data.length + 256);
  // ptr() needs a non-empty buffer; the size passed is the packet's
  const dataIn = new Uint8Array(Math.max(input.data.length, 1));
  dataIn.set(input.data);
  const ctx = input.skb ? skbCtx(input.skb) : null;
  const ctxOut = ctx ? new Uint8Array(ctx.length) : null;
  const o = new Uint8Array(OPTS_SIZE);
  const v = new DataView(o.buffer);
  v.setBigUint64(0, BigInt(OPTS_SIZE), true);
  v.setBigUint64(8, BigInt(addr(dataIn)), true);
  v.setBigUint64(16, BigInt(addr(out)), true);
  v.setUint32(24, input.data.length, true);
  v.setUint32(28, out.length, true);
  if (ctx && ctxOut) {
    v.setBigUint64(32, BigInt(addr(ctx)), true);
    v.setBigUint64(40, BigInt(addr(ctxOut)), true);
    v.setUint32(48, ctx.length, true);
    v.setUint32(52, ctxOut.length, true);
  }
  v.setInt32(60, input.repeat ?? 1, true);
  check("test-run program", lib().bpf.bpf_prog_test_run_opts(progFd, o));
  const outLen = v.getUint32(28, true);
  return { retval: v.getUint32(56, true), data: out.slice(0, outLen), durationNs: v.getUint32(64, true) };
}
