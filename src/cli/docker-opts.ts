/**
 * `tartan docker-opts`: flannel's mk-docker-opts.sh, same letters (-f -d -c -i -k -m),
 * same output, so Docker can be started with --bip/--mtu from subnet.env.
 */
import { readFileSync } from "node:fs";
import * as v from "valibot";
import { formatDockerOpts, parseSubnetEnv } from "../config/subnet-env.ts";
import { writeFileAtomic } from "../files.ts";
import { ValidationError } from "../validation.ts";
import { type Command, noArguments } from "./command.ts";
import { booleanFlag, type FlagSet, stringFlag, validateFlags, withHelp } from "./flag-def.ts";
import { FLANNELD_AGENT_FLAGS, HELP_FLAG } from "./options.ts";

export const DEFAULT_DOCKER_ENV = "/run/docker_opts.env";

/** The Docker options file docker-opts writes (and cleanup removes with --remove-subnet-file). */
export const DOCKER_ENV_FLAG = stringFlag({
  short: "d",
  default: DEFAULT_DOCKER_ENV,
  help: "Docker env file to write (- for stdout)",
});

export const DOCKER_OPTS_FLAGS = {
  "subnet-file": withHelp(
    FLANNELD_AGENT_FLAGS["subnet-file"],
    "flannel env file to read (the agent's --subnet-file)",
    {
      short: "f",
      env: false,
    },
  ),
  "docker-env": DOCKER_ENV_FLAG,
  combined: booleanFlag({ short: "c", help: "write the combined options into one variable" }),
  individual: booleanFlag({ short: "i", help: "write each option as its own DOCKER_OPT_* variable" }),
  key: stringFlag({
    short: "k",
    default: "DOCKER_OPTS",
    value: v.pipe(v.string(), v.regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be a shell variable name")),
    help: "name of the combined variable",
  }),
  "no-ip-masq": booleanFlag({ short: "m", help: "leave out --ip-masq (older Docker)" }),
  ipv6: booleanFlag({
    help: "Tartan's: also --ipv6 and --fixed-cidr-v6 from FLANNEL_IPV6_SUBNET (mk-docker-opts.sh writes no IPv6 options)",
  }),
  ...HELP_FLAG,
} satisfies FlagSet;

/** Reads subnet.env; an unreadable file names itself and the flag that picks another. */
export function readEnvFile(path: string, given: boolean): string {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : (e as Error).message;
    const hint = given
      ? ""
      : "; the agent writes it once it holds a lease, or read another file with -f PATH (--subnet-file=PATH)";
    throw new ValidationError(`${path}: cannot read the flannel env file (${why})${hint}`);
  }
}

export const dockerOptsCommand: Command = {
  name: "docker-opts",
  summary: "write Docker daemon options from subnet.env (flannel's mk-docker-opts.sh)",
  usage: "tartan docker-opts [-f SUBNET-ENV] [-d DOCKER-ENV] [-i] [-c] [-m] [-k KEY] [--ipv6]",
  about: [
    "Generate Docker daemon options from subnet.env, exactly as flannel's mk-docker-opts.sh.",
    "With neither -i nor -c, both are written. The script writes nothing for IPv6, nor does this",
    "command unless --ipv6 asks for Docker's --ipv6 --fixed-cidr-v6 from a dual-stack subnet.env.",
  ].join("\n"),
  flags: DOCKER_OPTS_FLAGS,
  notes: [
    "Example output:",
    '  DOCKER_OPT_BIP="--bip=10.244.3.1/24"',
    '  DOCKER_OPT_IPMASQ="--ip-masq=true"',
    '  DOCKER_OPT_MTU="--mtu=1450"',
    '  DOCKER_OPTS=" --bip=10.244.3.1/24 --ip-masq=true --mtu=1450"',
  ],
  async run(p, io) {
    noArguments("docker-opts", p.positionals);
    const o = validateFlags(DOCKER_OPTS_FLAGS, p.flags);
    const path = o["subnet-file"];
    let env: ReturnType<typeof parseSubnetEnv>;
    try {
      env = parseSubnetEnv(readEnvFile(path, p.flags["subnet-file"] !== undefined));
    } catch (e) {
      if (e instanceof ValidationError) throw e;
      throw new ValidationError(`${path}: ${(e as Error).message}`);
    }
    const content = formatDockerOpts(env, {
      individual: o.individual,
      combined: o.combined,
      combinedKey: o.key,
      noIpMasq: o["no-ip-masq"],
      ipv6: o.ipv6,
      existing: io.env[o.key],
    });
    if (o["docker-env"] === "-") io.out(content);
    else writeFileAtomic(o["docker-env"], content);
    return 0;
  },
};
