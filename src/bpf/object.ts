/**
 * A BPF object (ELF) opened from memory with libbpf, loaded into the kernel, with its
 * programs and maps found by name. Maps can be bound to a pin directory before load:
 * libbpf then reuses compatible pinned maps (their contents survive an agent restart)
 * and pins the rest. A verifier rejection becomes a BpfError carrying the verifier log.
 *
 * libbpf owns the fds of the object's maps and programs: `map()` and `program()` lend
 * them (fd.ts), and they are closed with the object. Closing the object (`close()` or
 * `using`) leaves attached programs and pinned maps in the kernel.
 */
import type { Pointer } from "bun:ffi";
import type { Logger } from "../log.ts";
import { BpfError, check, EINVAL, ENOENT, toError } from "./errors.ts";
import { BpfFd } from "./fd.ts";
import { offsetOf, optsBuffer } from "./layout.ts";
import { addr, cstr, lib, setLibbpfLogger, takeLibbpfLog } from "./libbpf.ts";
import { BpfMap, type Codec, type MapOptions } from "./map.ts";
import { LIBBPF_STRUCTS } from "./structs.ts";

export interface OpenOptions {
  /** Object name in libbpf's log lines. */
  readonly name?: string;
  /** Where libbpf's log goes. */
  readonly log?: Logger;
}

const SKELETON = LIBBPF_STRUCTS.bpf_object_skeleton;

/** The part of libbpf's log between its BEGIN/END PROG LOAD LOG markers, else the tail. */
export function verifierLogOf(libbpfLog: string): string {
  const m = /-- BEGIN PROG LOAD LOG --\n([\s\S]*?)-- END PROG LOAD LOG --/.exec(libbpfLog);
  if (m) return m[1]!;
  return libbpfLog.split("\n").slice(-40).join("\n");
}

/** The last lines of libbpf's log, as one line for an error's cause. */
function logTail(log: string): string | undefined {
  return log.trim().split("\n").slice(-3).join(" | ") || undefined;
}

export class BpfObject implements Disposable {
  readonly name: string;
  private handle: Pointer | null;
  private loaded = false;
  /** Buffers libbpf may still point into (the ELF image until load). */
  private readonly keep: Uint8Array[];

  private constructor(name: string, handle: Pointer, keep: Uint8Array[]) {
    this.name = name;
    this.handle = handle;
    this.keep = keep;
  }

  /**
   * Parses an ELF object held in memory (nothing reaches the kernel yet). Opens through
   * bpf_object__open_skeleton with no maps or programs to populate: unlike
   * bpf_object__open_mem (NULL + errno), it returns -errno itself.
   */
  static open(bytes: Uint8Array, opts: OpenOptions = {}): BpfObject {
    const l = lib();
    if (opts.log) setLibbpfLogger(opts.log);
    const objName = opts.name ?? "tartan";
    // bpf_object__open_mem refuses an empty buffer; the skeleton path would read a file named objName instead
    if (bytes.length === 0) throw new BpfError(`open BPF object ${objName}: no bytes`, { errno: EINVAL });
    const name = cstr(objName);
    const image = new Uint8Array(bytes);
    const out = new BigUint64Array(1); // struct bpf_object *, written on success
    const outBytes = new Uint8Array(out.buffer);
    const s = optsBuffer(SKELETON);
    s.view.setBigUint64(offsetOf(SKELETON, "name"), BigInt(addr(name)), true);
    s.view.setBigUint64(offsetOf(SKELETON, "data"), BigInt(addr(image)), true);
    s.view.setBigUint64(offsetOf(SKELETON, "data_sz"), BigInt(bytes.length), true);
    s.view.setBigUint64(offsetOf(SKELETON, "obj"), BigInt(addr(outBytes)), true);
    takeLibbpfLog();
    const rc = l.bpf.bpf_object__open_skeleton(s.bytes, null);
    const h = Number(out[0]) as Pointer;
    if (rc < 0) {
      // only populating maps/programs can fail after the object exists, and we ask for none
      if (h) l.bpf.bpf_object__close(h);
      throw toError(`open BPF object ${objName}`, -rc, { cause: logTail(takeLibbpfLog()) });
    }
    return new BpfObject(objName, h, [image, name]);
  }

  get closed(): boolean {
    return this.handle === null;
  }

  private get h(): Pointer {
    if (!this.handle) throw new BpfError(`BPF object ${this.name} used after close()`);
    return this.handle;
  }

  private mapPtr(name: string): Pointer {
    const m = lib().bpf.bpf_object__find_map_by_name(this.h, cstr(name)) as Pointer | null;
    if (!m) throw new BpfError(`map ${name} not in the object`, { errno: ENOENT });
    return m;
  }

  /** Before load: reuse the map pinned at `path` if compatible, else create and pin it there. */
  setPinPath(mapName: string, path: string): void {
    const p = cstr(path);
    this.keep.push(p);
    check(`set pin path of map ${mapName}`, lib().bpf.bpf_map__set_pin_path(this.mapPtr(mapName), p));
  }

  /** Creates the maps and loads every program; a verifier rejection carries its log. */
  load(): void {
    takeLibbpfLog();
    const rc = lib().bpf.bpf_object__load(this.h);
    const log = takeLibbpfLog();
    if (rc < 0) {
      const e = -rc;
      if (/PROG LOAD LOG|processed \d+ insns/.test(log)) {
        // the verifier refused a program (EACCES/EINVAL): not a permission problem
        const verifier = verifierLogOf(log);
        throw new BpfError("load BPF object", {
          errno: e,
          verifierLog: verifier,
          cause: `verifier: ${verifier.trim().split("\n").slice(-3).join(" | ")}`,
        });
      }
      throw toError("load BPF object", e, { cause: logTail(log) });
    }
    this.loaded = true;
  }

  /** A loaded program's fd, lent by the object (valid until the object is closed). */
  program(name: string): BpfFd {
    if (!this.loaded) throw new BpfError(`program ${name}: object not loaded`);
    const p = lib().bpf.bpf_object__find_program_by_name(this.h, cstr(name));
    if (!p) throw new BpfError(`program ${name} not in the object`, { errno: ENOENT });
    return BpfFd.borrow(
      check(`fd of program ${name}`, lib().bpf.bpf_program__fd(p)),
      `program ${name}`,
      this,
    );
  }

  /** A typed view of one of the object's maps, lent by the object (closed with it). */
  map<K, V>(name: string, key: Codec<K>, value: Codec<V>, opts: MapOptions = {}): BpfMap<K, V> {
    if (!this.loaded) throw new BpfError(`map ${name}: object not loaded`);
    // bpf_map__fd is the map's fd, -1 (not -errno) until the map is created: load() did that
    const fd = lib().bpf.bpf_map__fd(this.mapPtr(name));
    if (fd < 0) throw new BpfError(`map ${name} has no fd: it was not created`);
    return new BpfMap(name, BpfFd.borrow(fd, `map ${name}`, this), key, value, opts);
  }

  /** Closes libbpf's fds (every handle lent by map() and program() with them); idempotent. */
  close(): void {
    if (this.handle) lib().bpf.bpf_object__close(this.handle);
    this.handle = null;
    this.keep.length = 0;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
