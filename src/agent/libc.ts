/**
 * The few libc calls the agent needs that Bun has no API for: flock(2) (a lock the
 * kernel drops when the process dies, even on SIGKILL) and a unix datagram socket for
 * systemd's notify protocol (node:net has only stream sockets, Bun.udpSocket only UDP).
 * Opened on first use through bun:ffi; errno is read right after the failing call, on
 * the same (only) JS thread, before anything else can touch it.
 */
import { dlopen, FFIType, type Pointer, ptr, read } from "bun:ffi";
import { constants } from "node:os";

const { i32, i64, u32, u64, ptr: P } = FFIType;

const SYMBOLS = {
  flock: { args: [i32, i32], returns: i32 },
  socket: { args: [i32, i32, i32], returns: i32 },
  sendto: { args: [i32, P, u64, i32, P, u32], returns: i64 },
  close: { args: [i32], returns: i32 },
  __errno_location: { args: [], returns: P },
} as const;

let libc: ReturnType<typeof dlopen<typeof SYMBOLS>>["symbols"] | null = null;
function lib() {
  libc ??= dlopen("libc.so.6", SYMBOLS).symbols;
  return libc;
}

export const EWOULDBLOCK = 11;
const LOCK_EX = 2;
const LOCK_NB = 4;
const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const MSG_NOSIGNAL = 0x4000;

function errno(): number {
  return read.i32(lib().__errno_location() as Pointer, 0);
}

/** "ECONNREFUSED (111)" for an errno. */
export function errnoText(n: number): string {
  const name = Object.entries(constants.errno).find(([, v]) => v === n)?.[0];
  return name ? `${name} (${n})` : `errno ${n}`;
}

/** flock(fd, LOCK_EX | LOCK_NB): 0 when taken, else the errno (EWOULDBLOCK: someone holds it). */
export function tryLockExclusive(fd: number): number {
  return lib().flock(fd, LOCK_EX | LOCK_NB) === 0 ? 0 : errno();
}

/**
 * struct sockaddr_un for a path, or for an abstract name when it starts with "@"
 * (sun_path[0] = NUL, the length counts the name without a terminating NUL).
 */
export function unixAddress(address: string): { bytes: Buffer; length: number } {
  const abstract = address.startsWith("@");
  const name = Buffer.from(abstract ? address.slice(1) : address);
  // sun_path is 108 bytes; a path needs room for its NUL
  if (name.length > 107) throw new Error(`unix socket address ${address} is longer than 107 bytes`);
  const bytes = Buffer.alloc(110);
  bytes.writeUInt16LE(AF_UNIX, 0);
  name.copy(bytes, abstract ? 3 : 2);
  return { bytes, length: abstract ? 3 + name.length : 2 + name.length + 1 };
}

/** Sends one datagram to a unix datagram socket; throws with the errno on failure. */
export function sendUnixDatagram(address: string, message: string): void {
  const c = lib();
  const to = unixAddress(address);
  const fd = c.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new Error(`socket(AF_UNIX, SOCK_DGRAM): ${errnoText(errno())}`);
  try {
    const data = Buffer.from(message);
    const n = Number(c.sendto(fd, ptr(data), data.length, MSG_NOSIGNAL, ptr(to.bytes), to.length));
    if (n < 0) throw new Error(`sendto ${address}: ${errnoText(errno())}`);
  } finally {
    c.close(fd);
  }
}
