/**
 * The one command table: it drives dispatch, `tartan` and `tartan help`, `tartan help CMD`,
 * `tartan CMD --help` and the unknown-command error, so these cannot disagree.
 */
import { closestName, ValidationError } from "../validation.ts";
import { COMMIT, VERSION } from "../version.ts";
import { agentCommand } from "./agent.ts";
import { cleanupCommand } from "./cleanup.ts";
import { cniCommand } from "./cni.ts";
import { type Command, type Io, noArguments } from "./command.ts";
import { dockerOptsCommand } from "./docker-opts.ts";
import { doctorCommand } from "./doctor.ts";
import { parseFlags } from "./flags.ts";
import { commandHelp, mainHelp } from "./help.ts";
import { HELP_FLAG } from "./options.ts";
import { configCommand, leasesCommand } from "./registry-commands.ts";
import { statusCommand } from "./status.ts";

const versionCommand: Command = {
  name: "version",
  summary: "print the version (also `tartan --version`)",
  usage: "tartan version",
  about: "Print Tartan's version and the commit it was built from.",
  flags: HELP_FLAG,
  async run(p, io) {
    noArguments("version", p.positionals);
    io.out(`tartan ${VERSION} (${COMMIT})\n`);
    return 0;
  },
};

const helpCommand: Command = {
  name: "help",
  summary: "show this help, or `tartan help COMMAND` for a command's flags",
  usage: "tartan help [COMMAND]",
  about:
    "Show the commands, or one command's usage, flags (with defaults and FLANNELD_* names) and examples.",
  flags: HELP_FLAG,
  async run(p, io) {
    const [topic, ...extra] = p.positionals;
    if (extra.length > 0)
      throw new ValidationError(`help takes one COMMAND (got ${JSON.stringify(extra[0])})`);
    io.out(`${topic === undefined ? mainHelp(COMMANDS) : commandHelp(findCommand(topic, "no help for"))}\n`);
    return 0;
  },
};

/** Every command, in the order `tartan help` lists them. */
export const COMMANDS: readonly Command[] = [
  agentCommand,
  leasesCommand,
  configCommand,
  statusCommand,
  doctorCommand,
  dockerOptsCommand,
  cleanupCommand,
  cniCommand,
  versionCommand,
  helpCommand,
];

/** Spellings of help and version that flanneld users and habit reach for. */
const ALIASES: Record<string, string> = {
  "--help": "help",
  "-help": "help",
  "-h": "help",
  "--version": "version",
  "-version": "version",
};

/** A close spelling, or a command the word begins ("lease" → leases, "dock" → docker-opts). */
function closest(word: string): string | null {
  const names = COMMANDS.map((c) => c.name);
  return (
    closestName(word, names) ?? (word.length >= 3 ? (names.find((n) => n.startsWith(word)) ?? null) : null)
  );
}

export function findCommand(name: string, what = "unknown command"): Command {
  const c = COMMANDS.find((x) => x.name === (ALIASES[name] ?? name));
  if (c) return c;
  const near = closest(name);
  throw new ValidationError(
    `${what} "${name}"${near ? `; did you mean "${near}"?` : ""}; commands: ${COMMANDS.map((x) => x.name).join(", ")}`,
  );
}

/** Parses the command's flags, answers --help, else runs it. Returns the exit code. */
export async function runCommand(c: Command, argv: readonly string[], io: Io): Promise<number> {
  const parsed = parseFlags(c.name, argv, c.flags, c.env ? io.env : {});
  if (parsed.flags.help === true) {
    io.out(`${commandHelp(c)}\n`);
    return 0;
  }
  return c.run(parsed, io);
}
