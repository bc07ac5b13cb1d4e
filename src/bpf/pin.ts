/**
 * bpffs pins: making sure a pin directory sits on a BPF filesystem (mounting
 * /sys/fs/bpf when nothing is mounted there), pinning fds, opening pins again
 * (bpf_obj_get) and removing them. Pins keep maps and programs alive across agent
 * restarts.
 */
import { existsSync, mkdirSync, rmSync, statfsSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";
import type { Logger } from "../log.ts";
import { BpfError, check, ENOENT } from "./errors.ts";
import { BpfFd } from "./fd.ts";
import { cstr, lib } from "./libbpf.ts";

const BPF_FS_MAGIC = 0xcafe4a11;

export function isBpffs(path: string): boolean {
  try {
    return statfsSync(path).type === BPF_FS_MAGIC;
  } catch {
    return false;
  }
}

/** Ensures `dir` exists on a bpffs, mounting bpffs at /sys/fs/bpf if needed (logged). */
export async function ensurePinDir(dir: string, log: Logger): Promise<void> {
  const root = "/sys/fs/bpf";
  if (dir.startsWith(`${root}/`) && !isBpffs(root)) {
    const p = Bun.spawnSync(["mount", "-t", "bpf", "bpf", root], { stderr: "pipe" });
    if (p.exitCode !== 0) throw new BpfError(`mount bpffs at ${root}: ${p.stderr.toString().trim()}`);
    log.info("mounted the BPF filesystem", { path: root });
  }
  mkdirSync(dir, { recursive: true });
  if (!isBpffs(dir))
    throw new BpfError(`pin directory ${dir} is not on a BPF filesystem (mount -t bpf bpf ${root})`);
}

/** Pins `fd` at `path`, replacing an existing pin. */
export function pinFd(fd: number, path: string): void {
  mkdirSync(dirname(path), { recursive: true });
  unpin(path);
  check(`pin ${path}`, lib().bpf.bpf_obj_pin(fd, cstr(path)));
}

/**
 * Opens a pinned object: a new fd we own (close it); null when nothing is pinned there.
 * `what` names it in errors ("map x at /sys/fs/bpf/...").
 */
export function openPin(path: string, what = `pin ${path}`): BpfFd | null {
  if (!existsSync(path)) return null;
  const fd = lib().bpf.bpf_obj_get(cstr(path));
  if (fd === -ENOENT) return null;
  return BpfFd.own(check(`open ${what}`, fd), what);
}

export function unpin(path: string): void {
  try {
    unlinkSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
}

/** Removes a pin directory and everything pinned under it. */
export function removePinDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
