/**
 * C struct layouts as data: a struct's size and, per field, its byte offset and size.
 * abi.ts describes tartan.h's structs this way and structs.ts the libbpf and kernel
 * structs the FFI fills in by hand; test/bpf/abi.test.ts checks both tables against
 * what the C compiler makes of the headers, so an offset here cannot silently drift.
 */

/** A C struct's layout: field name → [offset, size] in bytes. */
export interface Layout {
  readonly size: number;
  readonly fields: Readonly<Record<string, readonly [number, number]>>;
}

/** The byte offset of `field` in `layout` (a typo is a type error). */
export function offsetOf<L extends Layout>(layout: L, field: keyof L["fields"] & string): number {
  return layout.fields[field]![0];
}

/** A zeroed buffer of the struct's size, with a DataView over it. */
export function structBuffer(layout: Layout): { bytes: Uint8Array; view: DataView } {
  const bytes = new Uint8Array(layout.size);
  return { bytes, view: new DataView(bytes.buffer) };
}

/**
 * A libbpf options struct: zeroed, with its leading `size_t sz` set to the size this
 * build was checked against (libbpf accepts a smaller or larger sz as long as the bytes
 * it does not know are zero).
 */
export function optsBuffer(layout: Layout): { bytes: Uint8Array; view: DataView } {
  const b = structBuffer(layout);
  b.view.setBigUint64(0, BigInt(layout.size), true);
  return b;
}
