/**
 * Entry point: `tartan COMMAND [flags]`, dispatched through the command table
 * (cli/commands.ts). Every expected failure becomes one `tartan: …` line on stderr and an
 * exit code: 2 for bad input (a flag, an argument, or a file or registry the command line
 * names that is not there or not valid), 1 for a failure at run time, 0 for success.
 */
import { runCniPlugin } from "./cli/cni.ts";
import type { Io } from "./cli/command.ts";
import { COMMANDS, findCommand, runCommand } from "./cli/commands.ts";
import { mainHelp } from "./cli/help.ts";
import { createLogger, errorText, type LogFormat, type LogLevel } from "./log.ts";
import { ValidationError } from "./validation.ts";

/** Log flags read leniently, so even a bad command line logs in the asked format. */
function loggerFrom(argv: readonly string[]) {
  const find = (name: string) => {
    for (let i = 0; i < argv.length; i++) {
      const m = new RegExp(`^--?${name}(?:=(.*))?$`).exec(argv[i]!);
      if (m) return m[1] ?? argv[i + 1];
    }
    return undefined;
  };
  const level = (find("log-level") ?? "info") as LogLevel;
  const format = (find("log-format") ?? "logfmt") as LogFormat;
  return createLogger({
    level: ["debug", "info", "warn", "error"].includes(level) ? level : "info",
    format: format === "json" ? "json" : "logfmt",
  });
}

function processIo(argv: readonly string[]): Io {
  return {
    out: (s) => process.stdout.write(s),
    err: (s) => process.stderr.write(s),
    log: loggerFrom(argv),
    env: process.env,
    stdin: () => Bun.stdin.text(),
  };
}

export async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  const io = processIo(rest);
  // The CNI plugin: a runtime runs /opt/cni/bin/tartan with CNI_COMMAND set and no arguments.
  if (name === undefined && process.env.CNI_COMMAND !== undefined) return runCniPlugin(io);
  try {
    if (name === undefined) {
      io.out(`${mainHelp(COMMANDS)}\n`);
      return 2;
    }
    return await runCommand(findCommand(name), rest, io);
  } catch (e) {
    if (e instanceof ValidationError) {
      process.stderr.write(`tartan: ${e.message}\n`);
      return 2;
    }
    process.stderr.write(`tartan: ${errorText(e)}\n`);
    return 1;
  }
}

if (import.meta.main) {
  const code = await main(process.argv.slice(2));
  process.exit(code);
}
