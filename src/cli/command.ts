/**
 * What a command is to the dispatcher (commands.ts): its help, its flags, whether
 * FLANNELD_* variables apply, and a run function given the parsed flags. Each command's
 * module exports one of these.
 */
import type { Logger } from "../log.ts";
import { ValidationError } from "../validation.ts";
import type { ParsedArgs } from "./flags.ts";
import type { CommandHelp } from "./help.ts";

/** A command's window on the process, so tests can run commands in-process. */
export interface Io {
  readonly out: (s: string) => void;
  readonly err: (s: string) => void;
  /** Logs in the format the command line asked for (read leniently, before validation). */
  readonly log: Logger;
  readonly env: Record<string, string | undefined>;
  readonly stdin: () => Promise<string>;
}

export interface Command extends CommandHelp {
  /** flanneld's FLANNELD_* variables apply to its flags that have one. */
  readonly env?: boolean;
  /** Runs with flags parsed (not yet validated) and `--help` already answered; returns the exit code. */
  readonly run: (args: ParsedArgs, io: Io) => Promise<number>;
}

/** For commands that take flags only. */
export function noArguments(command: string, positionals: readonly string[]): void {
  if (positionals.length > 0)
    throw new ValidationError(
      `${command} takes no arguments (got ${JSON.stringify(positionals[0])}); flags start with - or --`,
    );
}
