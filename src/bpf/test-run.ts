/**
 * BPF_PROG_TEST_RUN through bpf_prog_test_run_opts: run a loaded program on a packet
 * without attaching it and get the verdict, the packet as the program left it, and
 * (for TC programs) the __sk_buff context. Used by test/bpf and by `bench`.
 */
import { check } from "./errors.ts";
import { offsetOf, optsBuffer, structBuffer } from "./layout.ts";
import { addr, lib } from "./libbpf.ts";
import { LIBBPF_STRUCTS } from "./structs.ts";

const OPTS = LIBBPF_STRUCTS.bpf_test_run_opts;
const SKB = LIBBPF_STRUCTS.__sk_buff;

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
  const { bytes, view } = structBuffer(SKB);
  if (c.ifindex !== undefined) view.setUint32(offsetOf(SKB, "ifindex"), c.ifindex, true);
  if (c.ingressIfindex !== undefined)
    view.setUint32(offsetOf(SKB, "ingress_ifindex"), c.ingressIfindex, true);
  if (c.gsoSegs !== undefined) view.setUint32(offsetOf(SKB, "gso_segs"), c.gsoSegs, true);
  if (c.gsoSize !== undefined) view.setUint32(offsetOf(SKB, "gso_size"), c.gsoSize, true);
  return bytes;
}

/** Runs program `progFd` once (or `repeat` times) on `input.data`. */
export function testRun(progFd: number, input: TestRunInput): TestRunResult {
  const out = new Uint8Array(input.dataOutSize ?? input.data.length + 256);
  // ptr() needs a non-empty buffer; the size passed is the packet's
  const dataIn = new Uint8Array(Math.max(input.data.length, 1));
  dataIn.set(input.data);
  const ctx = input.skb ? skbCtx(input.skb) : null;
  const ctxOut = ctx ? new Uint8Array(ctx.length) : null;
  const { bytes: o, view: v } = optsBuffer(OPTS);
  const at = (f: keyof typeof OPTS.fields) => offsetOf(OPTS, f);
  v.setBigUint64(at("data_in"), BigInt(addr(dataIn)), true);
  v.setBigUint64(at("data_out"), BigInt(addr(out)), true);
  v.setUint32(at("data_size_in"), input.data.length, true);
  v.setUint32(at("data_size_out"), out.length, true);
  if (ctx && ctxOut) {
    v.setBigUint64(at("ctx_in"), BigInt(addr(ctx)), true);
    v.setBigUint64(at("ctx_out"), BigInt(addr(ctxOut)), true);
    v.setUint32(at("ctx_size_in"), ctx.length, true);
    v.setUint32(at("ctx_size_out"), ctxOut.length, true);
  }
  v.setInt32(at("repeat"), input.repeat ?? 1, true);
  check("test-run program", lib().bpf.bpf_prog_test_run_opts(progFd, o));
  const outLen = v.getUint32(at("data_size_out"), true);
  return {
    retval: v.getUint32(at("retval"), true),
    data: out.slice(0, outLen),
    durationNs: v.getUint32(at("duration"), true),
  };
}
