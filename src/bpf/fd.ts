/**
 * A file descriptor of a kernel BPF object (map or program) with its ownership
 * spelled out, like cilium/ebpf's FD:
 * - owned: we opened it (a pin, a program looked up by id); `close()` closes it.
 * - borrowed: it belongs to someone else (libbpf holds the fds of a loaded object's
 *   maps and programs and closes them in bpf_object__close). `close()` ends the borrow
 *   and never closes the fd; the handle is also closed once its owner is.
 * A closed handle throws a BpfError (EBADF) on use instead of handing out a number
 * the kernel may already have reused for another file. `close()` is idempotent, and
 * `using h = ...` closes at the end of the scope.
 */
import { BpfError, EBADF } from "./errors.ts";
import { closeFd } from "./libbpf.ts";

/** Whoever lends borrowed fds (a BpfObject): once it is closed, so are they. */
export interface FdOwner {
  readonly name: string;
  readonly closed: boolean;
}

export class BpfFd implements Disposable {
  /** What the fd is, for messages: "map tartan_subnets", "pin /sys/fs/bpf/...". */
  readonly what: string;
  readonly owned: boolean;
  private value: number;
  private readonly owner: FdOwner | null;

  private constructor(fd: number, what: string, owner: FdOwner | null) {
    if (!Number.isInteger(fd) || fd < 0) throw new BpfError(`${what}: not a file descriptor: ${fd}`);
    this.value = fd;
    this.what = what;
    this.owned = owner === null;
    this.owner = owner;
  }

  /** Takes ownership of `fd`: close() closes it. */
  static own(fd: number, what: string): BpfFd {
    return new BpfFd(fd, what, null);
  }

  /** Borrows `fd` from `owner`, which closes it; this handle never does. */
  static borrow(fd: number, what: string, owner: FdOwner): BpfFd {
    return new BpfFd(fd, what, owner);
  }

  /** True after close(), or for a borrowed fd once its owner is closed. */
  get closed(): boolean {
    return this.value < 0 || (this.owner?.closed ?? false);
  }

  /** The fd number; throws when the handle is closed. */
  get fd(): number {
    if (this.value < 0) throw new BpfError(`${this.what} used after close()`, { errno: EBADF });
    if (this.owner?.closed)
      throw new BpfError(`${this.what} used after its BPF object ${this.owner.name} was closed`, {
        errno: EBADF,
      });
    return this.value;
  }

  /** Owned: closes the fd. Borrowed: ends the borrow (the owner keeps the fd open). */
  close(): void {
    if (this.value < 0) return;
    if (this.owned) closeFd(this.value);
    this.value = -1;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
