/**
 * Typed errors for everything that goes through libbpf: the one place where errnos
 * are named and where libbpf's negative return values become `BpfError`s carrying the
 * operation, the errno (number and name) and the cause; and `BpfUnavailableError`,
 * the one-line explanation for an operator when BPF cannot work here at all.
 */

/**
 * Every errno this module names, name → number (Linux; the same on x86-64 and arm64),
 * and libbpf's own error codes (libbpf 1.x returns them negated, like errnos).
 */
export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  EMFILE: 24,
  ENOSPC: 28,
  ERANGE: 34,
  ENOSYS: 38,
  EOPNOTSUPP: 95,
  /** The kernel's internal "not supported" (include/linux/errno.h), which BPF syscalls leak. */
  ENOTSUPP: 524,
  LIBBPF_ERRNO__LIBELF: 4000,
  LIBBPF_ERRNO__FORMAT: 4001,
  LIBBPF_ERRNO__KVERSION: 4002,
  LIBBPF_ERRNO__ENDIAN: 4003,
  LIBBPF_ERRNO__INTERNAL: 4004,
  LIBBPF_ERRNO__RELOC: 4005,
  LIBBPF_ERRNO__LOAD: 4006,
  LIBBPF_ERRNO__VERIFY: 4007,
  LIBBPF_ERRNO__PROG2BIG: 4008,
  LIBBPF_ERRNO__KVER: 4009,
  LIBBPF_ERRNO__PROGTYPE: 4010,
} as const;

export const { EPERM, ENOENT, EBADF, EACCES, EEXIST, ENODEV, EINVAL, ENOSYS, EOPNOTSUPP, ENOTSUPP } = ERRNO;

const ERRNO_NAMES = new Map<number, string>(Object.entries(ERRNO).map(([name, n]) => [n, name]));

export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `errno ${errno}`;
}

export interface BpfErrorOptions {
  errno?: number;
  cause?: unknown;
  /** The verifier's log, when the kernel rejected a program. */
  verifierLog?: string;
}

/** A failed BPF operation: what we tried (`op`), the errno, and what caused it. */
export class BpfError extends Error {
  readonly op: string;
  readonly errno: number | null;
  readonly verifierLog: string | null;

  constructor(op: string, opts: BpfErrorOptions = {}) {
    const errno = opts.errno ?? null;
    super(errno === null ? op : `${op}: ${errnoName(errno)}`, { cause: opts.cause });
    this.name = "BpfError";
    this.op = op;
    this.errno = errno;
    this.verifierLog = opts.verifierLog ?? null;
  }

  /** True when the errno is one of `names` ("ENOENT", ...). */
  is(...names: string[]): boolean {
    return this.errno !== null && names.includes(errnoName(this.errno));
  }
}

/** BPF cannot work on this machine; the message is one line telling the operator what to do. */
export class BpfUnavailableError extends Error {
  constructor(message: string, cause?: unknown) {
    super(message, { cause });
    this.name = "BpfUnavailableError";
  }
}

const PERMISSION_HINT =
  "run tartan as root, or grant CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (e.g. systemd AmbientCapabilities=CAP_BPF CAP_NET_ADMIN CAP_PERFMON)";

/**
 * libbpf 1.x returns 0 or a positive value on success and -errno on failure from every
 * int-returning function this loader calls (bpf.c's libbpf_err_errno, netlink.c and
 * libbpf.c's libbpf_err): the errno arrives with the return value, never read later.
 */
export function check(op: string, ret: number): number {
  if (ret >= 0) return ret;
  throw toError(op, -ret);
}

/** The error for errno `errno` from `op`; permissions become the operator hint. */
export function toError(op: string, errno: number, opts: Omit<BpfErrorOptions, "errno"> = {}): Error {
  if (errno === EPERM || errno === EACCES) {
    return new BpfUnavailableError(
      `${op}: ${errnoName(errno)}: ${PERMISSION_HINT}`,
      new BpfError(op, { errno, ...opts }),
    );
  }
  if (errno === ENOSYS) {
    return new BpfUnavailableError(
      `${op}: the kernel has no BPF system call (ENOSYS): use a kernel built with CONFIG_BPF_SYSCALL=y (5.15 or newer)`,
    );
  }
  return new BpfError(op, { errno, ...opts });
}
