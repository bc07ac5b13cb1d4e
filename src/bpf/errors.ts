/**
 * Typed errors for everything that goes through libbpf: the one place where libbpf's
 * negative return values and errno become `BpfError`s carrying the operation, the
 * errno (number and name) and the cause; and `BpfUnavailableError`, the one-line
 * explanation for an operator when BPF cannot work here at all.
 */

const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  4: "EINTR",
  5: "EIO",
  7: "E2BIG",
  9: "EBADF",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  16: "EBUSY",
  17: "EEXIST",
  19: "ENODEV",
  22: "EINVAL",
  24: "EMFILE",
  28: "ENOSPC",
  34: "ERANGE",
  38: "ENOSYS",
  95: "EOPNOTSUPP",
  524: "ENOTSUPP",
  4003: "LIBBPF_ERRNO__FORMAT",
  4007: "LIBBPF_ERRNO__VERIFY",
  4009: "LIBBPF_ERRNO__KVER",
};

export const ENOENT = 2;
export const EPERM = 1;
export const EEXIST = 17;
export const EINVAL = 22;
export const ENOTSUPP = 524;
export const EOPNOTSUPP = 95;

export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `errno ${errno}`;
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

/** libbpf returns 0 or a positive value on success and -errno on failure. */
export function check(op: string, ret: number): number {
  if (ret >= 0) return ret;
  throw toError(op, -ret);
}

/** The error for errno `errno` from `op`; permissions become the operator hint. */
export function toError(op: string, errno: number, opts: Omit<BpfErrorOptions, "errno"> = {}): Error {
  if (errno === EPERM || errno === 13) {
    return new BpfUnavailableError(
      `${op}: ${errnoName(errno)}: ${PERMISSION_HINT}`,
      new BpfError(op, { errno, ...opts }),
    );
  }
  if (errno === 38) {
    return new BpfUnavailableError(
      `${op}: the kernel has no BPF system call (ENOSYS): use a kernel built with CONFIG_BPF_SYSCALL=y (5.15 or newer)`,
    );
  }
  return new BpfError(op, { errno, ...opts });
}
