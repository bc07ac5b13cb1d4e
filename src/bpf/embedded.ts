/**
 * The compiled eBPF object (build/tartan.bpf.o, from scripts/build-bpf), embedded in
 * the binary by `bun build --compile` and read from disk when running from source.
 */
import bpfObjectPath from "../../build/tartan.bpf.o" with { type: "file" };

/** The object's bytes. */
export async function embeddedObject(): Promise<Uint8Array> {
  return await Bun.file(bpfObjectPath).bytes();
}
