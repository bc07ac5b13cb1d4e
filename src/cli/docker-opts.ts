/**
 * `tartan docker-opts`: flannel's mk-docker-opts.sh, same letters (-f -d -c -i -k -m),
 * same output, so Docker can be started with --bip/--mtu from subnet.env.
 */
import { readFileSync } from "node:fs";
import * as v from "valibot";
import { DEFAULT_SUBNET_FILE } from "../config/options.ts";
import { formatDockerOpts, parseSubnetEnv } from "../config/subnet-env.ts";
import { writeFileAtomic } from "../files.ts";
import { ValidationError } from "../validation.ts";
import { type FlagDef, parseFlags } from "./flags.ts";
import { flagsHelp } from "./help.ts";
import { validateFlags } from "./options.ts";

export const DOCKER_OPTS_FLAGS: FlagDef[] = [
  {
    name: "subnet-file",
    short: "f",
    kind: "string",
    default: DEFAULT_SUBNET_FILE,
    help: "flannel env file to read",
  },
  {
    name: "docker-env",
    short: "d",
    kind: "string",
    default: "/run/docker_opts.env",
    help: "Docker env file to write (- for stdout)",
  },
  { name: "combined", short: "c", kind: "boolean", help: "write the combined options into one variable" },
  {
    name: "individual",
    short: "i",
    kind: "boolean",
    help: "write each option as its own DOCKER_OPT_* variable",
  },
  { name: "key", short: "k", kind: "string", default: "DOCKER_OPTS", help: "name of the combined variable" },
  { name: "no-ip-masq", short: "m", kind: "boolean", help: "leave out --ip-masq (older Docker)" },
  { name: "help", short: "h", kind: "boolean", help: "show this help" },
];

const Schema = v.object({
  "subnet-file": v.optional(v.string(), DEFAULT_SUBNET_FILE),
  "docker-env": v.optional(v.string(), "/run/docker_opts.env"),
  combined: v.optional(v.boolean(), false),
  individual: v.optional(v.boolean(), false),
  key: v.optional(
    v.pipe(v.string(), v.regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "--key must be a shell variable name")),
    "DOCKER_OPTS",
  ),
  "no-ip-masq": v.optional(v.boolean(), false),
  help: v.optional(v.boolean(), false),
});

export function dockerOptsHelp(): string {
  return flagsHelp(
    "tartan docker-opts [-f SUBNET-ENV] [-d DOCKER-ENV] [-i] [-c] [-m] [-k KEY]",
    "Generate Docker daemon options from subnet.env, exactly as flannel's mk-docker-opts.sh.\nWith neither -i nor -c, both are written.",
    DOCKER_OPTS_FLAGS,
    [
      "Example output:",
      '  DOCKER_OPT_BIP="--bip=10.244.3.1/24"',
      '  DOCKER_OPT_IPMASQ="--ip-masq=true"',
      '  DOCKER_OPT_MTU="--mtu=1450"',
      '  DOCKER_OPTS=" --bip=10.244.3.1/24 --ip-masq=true --mtu=1450"',
    ],
  );
}

export function runDockerOpts(argv: readonly string[], out: (s: string) => void): number {
  const { flags, positionals } = parseFlags("docker-opts", argv, DOCKER_OPTS_FLAGS, {});
  if (positionals.length)
    throw new ValidationError(
      `tartan docker-opts takes no arguments (got ${JSON.stringify(positionals[0])})`,
    );
  const o = validateFlags(Schema, flags);
  if (o.help) {
    out(`${dockerOptsHelp()}\n`);
    return 0;
  }
  let text: string;
  try {
    text = readFileSync(o["subnet-file"], "utf8");
  } catch (e) {
    throw new ValidationError(
      `-f ${o["subnet-file"]}: cannot read the flannel env file: ${(e as Error).message}`,
    );
  }
  let env: ReturnType<typeof parseSubnetEnv>;
  try {
    env = parseSubnetEnv(text);
  } catch (e) {
    throw new ValidationError(`-f ${o["subnet-file"]}: ${(e as Error).message}`);
  }
  const content = formatDockerOpts(env, {
    individual: o.individual,
    combined: o.combined,
    combinedKey: o.key,
    noIpMasq: o["no-ip-masq"],
    existing: process.env[o.key],
  });
  if (o["docker-env"] === "-") out(content);
  else writeFileAtomic(o["docker-env"], content);
  return 0;
}
