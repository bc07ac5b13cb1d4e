/**
 * A link's state without spawning `ip`: the SIOCGIFFLAGS and SIOCGIFHWADDR ioctls on a
 * datagram socket, through bun:ffi. The socket lives in the process's network
 * namespace, so the answer is that namespace's, as `ip` would give it (sysfs would not:
 * it shows the namespace /sys was mounted in). The watchdog asks every few seconds;
 * spawning `ip` for it was most of an idle agent's CPU (bench/CONTROL-PLANE.md).
 */
import { dlopen, FFIType, type Pointer, read } from "bun:ffi";

const { i32, u64, ptr: P } = FFIType;

const SYMBOLS = {
  socket: { args: [i32, i32, i32], returns: i32 },
  ioctl: { args: [i32, u64, P], returns: i32 },
  close: { args: [i32], returns: i32 },
  __errno_location: { args: [], returns: P },
} as const;

let libc: ReturnType<typeof dlopen<typeof SYMBOLS>>["symbols"] | null = null;
function lib() {
  libc ??= dlopen("libc.so.6", SYMBOLS).symbols;
  return libc;
}

const AF_INET = 2;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const SIOCGIFFLAGS = 0x8913;
const SIOCGIFHWADDR = 0x8927;
const IFF_UP = 0x1;
const ENODEV = 19;
/** struct ifreq: a 16-byte name, then a 24-byte union (flags, or a sockaddr with the MAC at +2). */
const IFREQ_BYTES = 40;
const IFNAMSIZ = 16;

export interface LinkState {
  /** Administratively up (IFF_UP), as `ip link` shows "UP" among the flags. */
  readonly up: boolean;
  /** Lower-case "aa:bb:cc:dd:ee:ff". */
  readonly mac: string;
}

/** The link's state, or null when there is no such link in this namespace; throws for anything else. */
export function linkState(name: string): LinkState | null {
  const nameBytes = new TextEncoder().encode(name);
  if (nameBytes.length >= IFNAMSIZ) return null;
  const c = lib();
  const fd = c.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    throw new Error(
      `socket for the link state of ${name}: errno ${read.i32(c.__errno_location() as Pointer, 0)}`,
    );
  try {
    const req = new Uint8Array(IFREQ_BYTES);
    const ask = (request: number): boolean => {
      req.fill(0);
      req.set(nameBytes);
      if (c.ioctl(fd, request, req) === 0) return true;
      const errno = read.i32(c.__errno_location() as Pointer, 0);
      if (errno === ENODEV) return false;
      throw new Error(`ioctl ${request.toString(16)} on ${name}: errno ${errno}`);
    };
    if (!ask(SIOCGIFFLAGS)) return null;
    const flags = req[IFNAMSIZ]! | (req[IFNAMSIZ + 1]! << 8);
    if (!ask(SIOCGIFHWADDR)) return null;
    const mac = Array.from(req.subarray(IFNAMSIZ + 2, IFNAMSIZ + 8), (b) =>
      b.toString(16).padStart(2, "0"),
    ).join(":");
    return { up: (flags & IFF_UP) !== 0, mac };
  } finally {
    c.close(fd);
  }
}
