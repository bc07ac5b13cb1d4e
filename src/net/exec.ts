/**
 * Running the few external tools the agent drives (ip, bridge, nft): argv in, optional
 * stdin, exit code and output back. The one place that spawns them.
 */

export interface ExecResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export async function run(cmd: readonly string[], stdin?: string): Promise<ExecResult> {
  const p = Bun.spawn([...cmd], {
    stdin: stdin === undefined ? "ignore" : new TextEncoder().encode(stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  return { code, stdout, stderr };
}

/** A long-lived tool started by spawnLines. */
export interface LineChild {
  readonly pid: number;
  /** Resolves with the exit code once the child has exited and its last line was handed on. */
  readonly done: Promise<number>;
  /** Ends the child (SIGTERM to its own PID). */
  kill(): void;
}

/**
 * Starts a long-lived tool and hands each complete line of its stdout to `onLine` as it
 * arrives (stderr is kept and returned through `onExit`). Used for `ip monitor`.
 */
export function spawnLines(
  cmd: readonly string[],
  onLine: (line: string) => void,
  onExit: (code: number, stderr: string) => void,
): LineChild {
  const p = Bun.spawn([...cmd], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const read = (async () => {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of p.stdout) {
      buf += dec.decode(chunk, { stream: true });
      let nl = buf.indexOf("\n");
      while (nl >= 0) {
        onLine(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        nl = buf.indexOf("\n");
      }
    }
    if (buf) onLine(buf);
  })();
  const done = Promise.all([read, new Response(p.stderr).text(), p.exited]).then(([, stderr, code]) => {
    onExit(code, stderr);
    return code;
  });
  return { pid: p.pid, done, kill: () => p.kill("SIGTERM") };
}
