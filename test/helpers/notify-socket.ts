/**
 * A listening unix datagram socket, as systemd's NOTIFY_SOCKET is, for tests: bound to a
 * path or an abstract name ("@…"), read without blocking, closed (and its path removed)
 * by close(). Abstract names live in the network namespace that binds them.
 */
import { dlopen, FFIType, ptr } from "bun:ffi";
import { rmSync } from "node:fs";
import { unixAddress } from "../../src/agent/libc.ts";

const { i32, i64, u32, u64, ptr: P } = FFIType;
const libc = dlopen("libc.so.6", {
  socket: { args: [i32, i32, i32], returns: i32 },
  bind: { args: [i32, P, u32], returns: i32 },
  recv: { args: [i32, P, u64, i32], returns: i64 },
  close: { args: [i32], returns: i32 },
}).symbols;

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const MSG_DONTWAIT = 0x40;

export class NotifyListener {
  readonly messages: string[] = [];
  readonly #fd: number;

  constructor(readonly address: string) {
    this.#fd = libc.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (this.#fd < 0) throw new Error("socket(AF_UNIX, SOCK_DGRAM) failed");
    const a = unixAddress(address);
    if (libc.bind(this.#fd, ptr(a.bytes), a.length) !== 0) {
      libc.close(this.#fd);
      throw new Error(`bind ${address} failed`);
    }
  }

  /** Reads every datagram waiting now into `messages`; returns them all. */
  drain(): string[] {
    const buf = Buffer.alloc(4096);
    for (;;) {
      const n = Number(libc.recv(this.#fd, ptr(buf), buf.length, MSG_DONTWAIT));
      if (n < 0) return this.messages;
      this.messages.push(buf.subarray(0, n).toString());
    }
  }

  close(): void {
    libc.close(this.#fd);
    if (!this.address.startsWith("@")) rmSync(this.address, { force: true });
  }
}
