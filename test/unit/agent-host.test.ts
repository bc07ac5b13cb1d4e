/**
 * What the agent shares with its host: systemd's notify socket (path and abstract forms,
 * through the real socket calls), and the locks that keep a second agent off a subnet
 * file or bpffs directory — held by a real second process, released when it is killed.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  holderIn,
  LockHeldError,
  lockHolder,
  runningAgent,
  subnetFileLock,
  takeLock,
} from "../../src/agent/lock.ts";
import { SystemdNotifier } from "../../src/agent/sd-notify.ts";
import { createLogger, silentLogger } from "../../src/log.ts";
import { until } from "../helpers/netns.ts";
import { NotifyListener } from "../helpers/notify-socket.ts";
import { ROOT } from "../helpers/tartan.ts";

const dirs: string[] = [];
const closers: (() => void)[] = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), "tartan-host-"));
  dirs.push(d);
  return d;
}

describe("sd_notify", () => {
  for (const form of ["path", "abstract"] as const)
    test(`READY=1 with a status, then STOPPING=1, reach NOTIFY_SOCKET (${form} form)`, async () => {
      const address =
        form === "path" ? join(tmp(), "notify") : `@tartan-test-notify-${process.pid}-${Date.now()}`;
      const listener = new NotifyListener(address);
      closers.push(() => listener.close());
      const n = new SystemdNotifier(address, silentLogger);
      expect(n.enabled).toBe(true);
      n.ready("holding 198.19.3.0/24");
      n.stopping();
      await until(() => listener.drain().length === 2, "two notifications", 2000);
      expect(listener.messages).toEqual(["READY=1\nSTATUS=holding 198.19.3.0/24", "STOPPING=1"]);
    });

  test("without NOTIFY_SOCKET nothing is sent; an unreachable socket is a warning, not a failure", () => {
    expect(new SystemdNotifier(undefined, silentLogger).enabled).toBe(false);
    new SystemdNotifier(undefined, silentLogger).ready("x");
    const lines: string[] = [];
    const log = createLogger({ write: (l) => lines.push(l) });
    new SystemdNotifier(join(tmp(), "nobody-listens"), log).ready("x");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('msg="cannot notify systemd (NOTIFY_SOCKET)"');
    expect(lines[0]).toContain("ENOENT");
  });
});

/** A second process that takes the lock on `path` and holds it until killed. */
function holder(path: string) {
  const script = join(tmp(), "hold.ts");
  writeFileSync(
    script,
    `import { takeLock } from ${JSON.stringify(join(ROOT, "src/agent/lock.ts"))};\n` +
      `takeLock(${JSON.stringify(path)}, "test");\nconsole.log("held");\nsetInterval(() => {}, 1000);\n`,
  );
  const p = Bun.spawn([process.execPath, script], { stdout: "pipe", stderr: "inherit" });
  closers.push(() => p.kill("SIGKILL"));
  return p;
}

async function held(p: ReturnType<typeof holder>): Promise<void> {
  const reader = p.stdout.getReader();
  const { value } = await reader.read();
  expect(new TextDecoder().decode(value)).toContain("held");
  reader.releaseLock();
}

describe("agent locks", () => {
  test("a lock file held by another process is refused, naming the file and the PID; SIGKILL frees it", async () => {
    const subnetFile = join(tmp(), "run", "subnet.env");
    const lockPath = subnetFileLock(subnetFile);
    const p = holder(lockPath);
    await held(p);
    expect(readFileSync(lockPath, "utf8")).toBe(`${p.pid}\n`);
    expect(lockHolder(lockPath)).toBe(p.pid);
    const err = (() => {
      try {
        takeLock(lockPath, `--subnet-file=${subnetFile}`);
      } catch (e) {
        return e as Error;
      }
    })();
    expect(err).toBeInstanceOf(LockHeldError);
    expect(err!.message).toBe(
      `--subnet-file=${subnetFile} is in use by another tartan agent (PID ${p.pid} holds the lock on ${lockPath}); ` +
        "every agent on a host needs its own --subnet-file and --bpffs (and --node-name)",
    );
    expect(runningAgent(subnetFile, join(tmp(), "no-bpffs"))).toBe(`PID ${p.pid} holds ${lockPath}`);
    p.kill("SIGKILL");
    await p.exited;
    const mine = takeLock(lockPath, "x");
    expect(lockHolder(lockPath)).toBe(process.pid);
    mine.release();
    expect(lockHolder(lockPath)).toBeNull();
    expect(runningAgent(subnetFile, join(tmp(), "no-bpffs"))).toBeNull();
  });

  test("a directory (the bpffs pin directory) is locked itself", async () => {
    const dir = join(tmp(), "pins");
    mkdirSync(dir);
    const p = holder(dir);
    await held(p);
    expect(lockHolder(dir)).toBe(p.pid);
    expect(() => takeLock(dir, `--bpffs=${dir}`)).toThrow(
      `--bpffs=${dir} is in use by another tartan agent (PID ${p.pid}`,
    );
    expect(runningAgent(join(tmp(), "subnet.env"), dir)).toBe(`PID ${p.pid} holds ${dir}`);
  });

  test("two locks in one process conflict too (flock is per open file)", () => {
    const path = join(tmp(), "x.lock");
    const a = takeLock(path, "x");
    expect(() => takeLock(path, "x")).toThrow(LockHeldError);
    a.release();
    takeLock(path, "x").release();
  });

  test("/proc/locks parsing: the granted FLOCK on the inode, not a waiter or a POSIX lock", () => {
    const text = [
      "1: POSIX  ADVISORY  WRITE 99 00:27:5 0 EOF",
      "2: FLOCK  ADVISORY  WRITE 1234 00:27:309714 0 EOF",
      "2: -> FLOCK  ADVISORY  WRITE 4321 00:27:309714 0 EOF",
    ].join("\n");
    expect(holderIn(text, "00:27:309714")).toBe(1234);
    expect(holderIn(text, "00:27:5")).toBeNull();
    expect(holderIn(text, "fe:00:1")).toBeNull();
  });
});
