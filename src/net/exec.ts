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
