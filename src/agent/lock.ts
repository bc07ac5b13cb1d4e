/**
 * One agent per subnet file and per bpffs directory. Two agents sharing either (a
 * mistake made when trying several nodes on one machine) would overwrite each other's
 * subnet.env or datapath while both report healthy. The agent holds an exclusive
 * flock(2) on `<subnet-file>.lock` and on its bpffs directory: the kernel drops it when
 * the process dies, however it dies, so a stale lock never blocks a restart. Who holds a
 * lock is read from /proc/locks, so the refusal can name the PID.
 */
import {
  closeSync,
  existsSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readFileSync,
  statSync,
  writeSync,
} from "node:fs";
import { dirname } from "node:path";
import { EWOULDBLOCK, errnoText, tryLockExclusive } from "./libc.ts";

/** The lock file that guards a subnet file. */
export function subnetFileLock(subnetFile: string): string {
  return `${subnetFile}.lock`;
}

export class LockHeldError extends Error {
  override name = "LockHeldError";
}

export interface HeldLock {
  readonly path: string;
  release(): void;
}

/**
 * Takes the lock on `path` without waiting: an existing directory is locked itself, any
 * other path is a lock file (created, holding our PID). `what` names the shared resource
 * in the refusal ("--subnet-file=/run/flannel/subnet.env").
 */
export function takeLock(path: string, what: string): HeldLock {
  const isDir = existsSync(path) && statSync(path).isDirectory();
  if (!isDir) mkdirSync(dirname(path), { recursive: true });
  const fd = openSync(path, isDir ? "r" : "a+", 0o644);
  const err = tryLockExclusive(fd);
  if (err !== 0) {
    closeSync(fd);
    if (err !== EWOULDBLOCK) throw new Error(`cannot lock ${path}: ${errnoText(err)}`);
    const pid = lockHolder(path);
    throw new LockHeldError(
      `${what} is in use by another tartan agent (${pid === null ? "a process" : `PID ${pid}`} holds the lock on ${path}); ` +
        "every agent on a host needs its own --subnet-file and --bpffs (and --node-name)",
    );
  }
  if (!isDir) {
    ftruncateSync(fd, 0);
    writeSync(fd, `${process.pid}\n`, 0);
  }
  let held = true;
  return {
    path,
    release() {
      if (!held) return;
      held = false;
      closeSync(fd); // closing the last fd drops the flock
    },
  };
}

/** The PID holding a flock on `path` (from /proc/locks), or null when nobody does. */
export function lockHolder(path: string): number | null {
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(path);
  } catch {
    return null;
  }
  const dev = BigInt(st.dev);
  const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
  const minor = Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
  const id = `${major.toString(16).padStart(2, "0")}:${minor.toString(16).padStart(2, "0")}:${st.ino}`;
  return holderIn(readFileSync("/proc/locks", "utf8"), id);
}

/**
 * The PID of the granted FLOCK on `id` ("MAJ:MIN:INODE", /proc/locks' form) in a
 * /proc/locks text. Lines like "1: FLOCK  ADVISORY  WRITE 1234 00:27:309714 0 EOF";
 * waiters ("1: -> FLOCK …") are not holders.
 */
export function holderIn(locks: string, id: string): number | null {
  for (const line of locks.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f[1] !== "FLOCK" || f[5] !== id) continue;
    const pid = Number(f[4]);
    if (Number.isInteger(pid) && pid > 0) return pid;
  }
  return null;
}

/**
 * Which agent is running on this node's subnet file or bpffs directory, as words for a
 * refusal ("PID 1234 holds /run/flannel/subnet.env.lock"); null when none is.
 */
export function runningAgent(subnetFile: string, bpffs: string): string | null {
  for (const path of [subnetFileLock(subnetFile), bpffs]) {
    const pid = lockHolder(path);
    if (pid !== null) return `PID ${pid} holds ${path}`;
  }
  return null;
}
