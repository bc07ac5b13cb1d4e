/**
 * Typed BPF maps over fixed-size codecs (see abi.ts): lookup, update, delete, key
 * iteration, entries, batch update and batch delete, like cilium/ebpf's Map. Per-CPU
 * maps return one value per possible CPU from `lookupPerCpu`. A map holds a BpfFd
 * (fd.ts): `BpfMap.openPinned` owns its fd; `BpfObject.map` lends one of the object's.
 * After close() (or its object's) every method throws instead of touching a stale fd.
 */
import { basename } from "node:path";
import { BpfError, check, EINVAL, ENOENT, ENOTSUPP, EOPNOTSUPP } from "./errors.ts";
import type { BpfFd } from "./fd.ts";
import { lib, possibleCpus } from "./libbpf.ts";
import { openPin } from "./pin.ts";
import { LIBBPF_CONSTANTS } from "./structs.ts";

/** A fixed-size binary layout for a key or value. */
export interface Codec<T> {
  readonly size: number;
  encode(value: T, view: DataView, offset: number): void;
  decode(view: DataView, offset: number): T;
}

export const { BPF_ANY, BPF_NOEXIST, BPF_EXIST } = LIBBPF_CONSTANTS;

export interface MapOptions {
  /** Per-CPU map: values are read with lookupPerCpu and written to every CPU. */
  readonly perCpu?: boolean;
}

function buf(size: number): { bytes: Uint8Array; view: DataView } {
  const bytes = new Uint8Array(Math.max(size, 1));
  return { bytes, view: new DataView(bytes.buffer) };
}

export class BpfMap<K, V> implements Disposable {
  readonly name: string;
  private readonly handle: BpfFd;
  private readonly key: Codec<K>;
  private readonly value: Codec<V>;
  private readonly perCpu: boolean;
  private readonly stride: number;

  /** A typed view of the map behind `handle`; the handle's ownership decides what close() does. */
  constructor(name: string, handle: BpfFd, key: Codec<K>, value: Codec<V>, opts: MapOptions = {}) {
    this.name = name;
    this.handle = handle;
    this.key = key;
    this.value = value;
    this.perCpu = opts.perCpu ?? false;
    this.stride = this.perCpu ? Math.ceil(value.size / 8) * 8 : value.size;
  }

  /** Opens the map pinned at `path` (owned: close() closes it); null when nothing is pinned there. */
  static openPinned<K, V>(
    path: string,
    key: Codec<K>,
    value: Codec<V>,
    opts: MapOptions = {},
  ): BpfMap<K, V> | null {
    const name = basename(path);
    const handle = openPin(path, `map ${name} at ${path}`);
    return handle === null ? null : new BpfMap(name, handle, key, value, opts);
  }

  /** The map's fd (to pin it, or for its id); throws once the map is closed. */
  get fd(): number {
    return this.handle.fd;
  }

  get owned(): boolean {
    return this.handle.owned;
  }

  get closed(): boolean {
    return this.handle.closed;
  }

  private encKey(k: K): Uint8Array {
    const b = buf(this.key.size);
    this.key.encode(k, b.view, 0);
    return b.bytes;
  }

  private valueBytes(): number {
    return this.perCpu ? this.stride * possibleCpus() : this.value.size;
  }

  lookup(k: K): V | null {
    if (this.perCpu) throw new BpfError(`map ${this.name}: per-CPU map, use lookupPerCpu`);
    const v = buf(this.value.size);
    const rc = lib().bpf.bpf_map_lookup_elem(this.fd, this.encKey(k), v.bytes);
    if (rc === -ENOENT) return null;
    check(`lookup in map ${this.name}`, rc);
    return this.value.decode(v.view, 0);
  }

  /** One value per possible CPU. */
  lookupPerCpu(k: K): V[] | null {
    const v = buf(this.valueBytes());
    const rc = lib().bpf.bpf_map_lookup_elem(this.fd, this.encKey(k), v.bytes);
    if (rc === -ENOENT) return null;
    check(`lookup in map ${this.name}`, rc);
    const out: V[] = [];
    for (let cpu = 0; cpu < possibleCpus(); cpu++) out.push(this.value.decode(v.view, cpu * this.stride));
    return out;
  }

  update(k: K, v: V, flags: number = BPF_ANY): void {
    const b = buf(this.valueBytes());
    if (this.perCpu)
      for (let cpu = 0; cpu < possibleCpus(); cpu++) this.value.encode(v, b.view, cpu * this.stride);
    else this.value.encode(v, b.view, 0);
    check(`update map ${this.name}`, lib().bpf.bpf_map_update_elem(this.fd, this.encKey(k), b.bytes, flags));
  }

  /** Returns false when the key was not there. */
  delete(k: K): boolean {
    const rc = lib().bpf.bpf_map_delete_elem(this.fd, this.encKey(k));
    if (rc === -ENOENT) return false;
    check(`delete from map ${this.name}`, rc);
    return true;
  }

  /** Every key (a snapshot walk with get_next_key). */
  keys(): K[] {
    const out: K[] = [];
    const cur = buf(this.key.size);
    const next = buf(this.key.size);
    let first = true;
    for (;;) {
      const rc = lib().bpf.bpf_map_get_next_key(this.fd, first ? null : cur.bytes, next.bytes);
      if (rc === -ENOENT) break;
      check(`iterate map ${this.name}`, rc);
      out.push(this.key.decode(next.view, 0));
      cur.bytes.set(next.bytes);
      first = false;
    }
    return out;
  }

  /** Every entry (a snapshot walk), through one key and one value buffer for the whole walk. */
  entries(): Array<[K, V]> {
    if (this.perCpu) throw new BpfError(`map ${this.name}: per-CPU map, use lookupPerCpu`);
    const out: Array<[K, V]> = [];
    const cur = buf(this.key.size);
    const next = buf(this.key.size);
    const v = buf(this.value.size);
    let first = true;
    for (;;) {
      const rc = lib().bpf.bpf_map_get_next_key(this.fd, first ? null : cur.bytes, next.bytes);
      if (rc === -ENOENT) break;
      check(`iterate map ${this.name}`, rc);
      const found = lib().bpf.bpf_map_lookup_elem(this.fd, next.bytes, v.bytes);
      // deleted between the two calls: skipped, as before
      if (found !== -ENOENT) {
        check(`lookup in map ${this.name}`, found);
        out.push([this.key.decode(next.view, 0), this.value.decode(v.view, 0)]);
      }
      cur.bytes.set(next.bytes);
      first = false;
    }
    return out;
  }

  /**
   * Writes many entries with one BPF_MAP_UPDATE_BATCH (hash, array, LPM trie on 6.x);
   * where the kernel or map type has no batch op, one update each. Returns the count.
   */
  updateBatch(entries: ReadonlyArray<readonly [K, V]>): number {
    const n = entries.length;
    if (n === 0) return 0;
    if (this.perCpu) {
      for (const [k, v] of entries) this.update(k, v);
      return n;
    }
    const ks = this.key.size;
    const vs = this.value.size;
    const keys = buf(ks * n);
    const vals = buf(vs * n);
    for (let i = 0; i < n; i++) {
      const e = entries[i]!;
      this.key.encode(e[0], keys.view, i * ks);
      this.value.encode(e[1], vals.view, i * vs);
    }
    const count = new Uint32Array([n]);
    const rc = lib().bpf.bpf_map_update_batch(this.fd, keys.bytes, vals.bytes, count, null);
    if (rc === 0) return n;
    if (rc !== -EINVAL && rc !== -ENOTSUPP && rc !== -EOPNOTSUPP) check(`batch update map ${this.name}`, rc);
    for (const [k, v] of entries) this.update(k, v);
    return n;
  }

  /**
   * Deletes many keys with one BPF_MAP_DELETE_BATCH where the map type has it, else one
   * delete each (also when a key is missing: the batch stops at the first ENOENT).
   * Returns how many were there.
   */
  deleteBatch(keys: readonly K[]): number {
    const n = keys.length;
    if (n === 0) return 0;
    const ks = this.key.size;
    const b = buf(ks * n);
    for (let i = 0; i < n; i++) this.key.encode(keys[i]!, b.view, i * ks);
    const count = new Uint32Array([n]);
    const rc = lib().bpf.bpf_map_delete_batch(this.fd, b.bytes, count, null);
    if (rc === 0) return n;
    if (rc !== -ENOENT && rc !== -EINVAL && rc !== -ENOTSUPP && rc !== -EOPNOTSUPP)
      check(`batch delete from map ${this.name}`, rc);
    // count says how many went before the failure; the rest one by one
    const done = rc === -ENOENT ? Math.min(count[0]!, n) : 0;
    let deleted = done;
    for (let i = done; i < n; i++) if (this.delete(keys[i]!)) deleted++;
    return deleted;
  }

  /** Closes an owned map's fd; on a borrowed map, ends the borrow (see fd.ts). */
  close(): void {
    this.handle.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
