/**
 * `/run/flannel/subnet.env` in flanneld's exact format, written atomically (temp file +
 * rename), parsed strictly; and `docker-opts`, the output of flannel's mk-docker-opts.sh.
 */
import { readFileSync } from "node:fs";
import { writeFileAtomic } from "../files.ts";
import { ValidationError } from "../validation.ts";
import { type Cidr, firstHost, formatCidr, formatIp4, parseCidr, parseIp4 } from "./cidr.ts";

export interface SubnetEnv {
  /** FLANNEL_NETWORK */
  readonly network: Cidr;
  /** FLANNEL_SUBNET's prefix (the file holds its first address: 10.244.3.1/24). */
  readonly subnet: Cidr;
  readonly mtu: number;
  readonly ipMasq: boolean;
}

export function formatSubnetEnv(env: SubnetEnv): string {
  return (
    `FLANNEL_NETWORK=${formatCidr(env.network)}\n` +
    `FLANNEL_SUBNET=${formatIp4(firstHost(env.subnet))}/${env.subnet.len}\n` +
    `FLANNEL_MTU=${env.mtu}\n` +
    `FLANNEL_IPMASQ=${env.ipMasq}\n`
  );
}

/** Raw KEY=VALUE pairs of an env file (comments and blank lines skipped, optional quotes removed). */
export function parseEnvPairs(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const rawLine of text.split("\n")) {
    const line = rawLine.trim();
    if (!line || line.startsWith("#")) continue;
    const eq = line.indexOf("=");
    if (eq <= 0) throw new ValidationError(`line ${JSON.stringify(rawLine)} is not KEY=VALUE`);
    let val = line.slice(eq + 1);
    if (val.length >= 2 && (val[0] === '"' || val[0] === "'") && val.endsWith(val[0]!))
      val = val.slice(1, -1);
    out.set(line.slice(0, eq), val);
  }
  return out;
}

/** Parses a subnet.env; throws ValidationError naming the variable when it is missing or malformed. */
export function parseSubnetEnv(text: string): SubnetEnv {
  const kv = parseEnvPairs(text);
  const need = (k: string) => {
    const v = kv.get(k);
    if (v === undefined) throw new ValidationError(`${k} is missing`);
    return v;
  };
  const network = parseCidr(need("FLANNEL_NETWORK"));
  if (!network)
    throw new ValidationError(
      `FLANNEL_NETWORK=${kv.get("FLANNEL_NETWORK")} is not a CIDR like 10.244.0.0/16`,
    );
  const subText = need("FLANNEL_SUBNET");
  const sub = parseCidr(subText, false);
  if (!sub || parseIp4(subText.split("/")[0]!) === null)
    throw new ValidationError(`FLANNEL_SUBNET=${subText} is not an address/len like 10.244.3.1/24`);
  const mtuText = need("FLANNEL_MTU");
  const mtu = Number(mtuText);
  if (!/^\d+$/.test(mtuText) || mtu < 68 || mtu > 65535)
    throw new ValidationError(`FLANNEL_MTU=${mtuText} is not an MTU (68..65535)`);
  const masq = need("FLANNEL_IPMASQ");
  if (masq !== "true" && masq !== "false")
    throw new ValidationError(`FLANNEL_IPMASQ=${masq} must be true or false`);
  return { network, subnet: sub, mtu, ipMasq: masq === "true" };
}

export function writeSubnetEnv(path: string, env: SubnetEnv): void {
  writeFileAtomic(path, formatSubnetEnv(env));
}

export type ReadSubnetEnv =
  | { readonly kind: "missing" }
  | { readonly kind: "ok"; readonly env: SubnetEnv }
  | { readonly kind: "invalid"; readonly reason: string };

export function readSubnetEnv(path: string): ReadSubnetEnv {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return { kind: "missing" };
    return { kind: "invalid", reason: (e as Error).message };
  }
  try {
    return { kind: "ok", env: parseSubnetEnv(text) };
  } catch (e) {
    return { kind: "invalid", reason: (e as Error).message };
  }
}

export interface DockerOptsFlags {
  /** -i: one DOCKER_OPT_* variable per option */
  readonly individual: boolean;
  /** -c: the combined variable */
  readonly combined: boolean;
  /** -k: name of the combined variable */
  readonly combinedKey: string;
  /** -m: leave out --ip-masq */
  readonly noIpMasq: boolean;
  /** The combined variable's current value, which mk-docker-opts.sh prepends (from the environment). */
  readonly existing?: string;
}

/** What mk-docker-opts.sh writes for this subnet.env, byte for byte. */
export function formatDockerOpts(env: SubnetEnv, flags: DockerOptsFlags): string {
  let indiv = flags.individual;
  let comb = flags.combined;
  if (!indiv && !comb) indiv = comb = true;
  // sorted by name, as `set | grep DOCKER_OPT_` lists them
  const opts: [string, string][] = [
    ["DOCKER_OPT_BIP", `--bip=${formatIp4(firstHost(env.subnet))}/${env.subnet.len}`],
  ];
  // docker masquerades unless flannel already does
  if (!flags.noIpMasq) opts.push(["DOCKER_OPT_IPMASQ", `--ip-masq=${!env.ipMasq}`]);
  opts.push(["DOCKER_OPT_MTU", `--mtu=${env.mtu}`]);
  let combinedValue = flags.existing ? `${flags.existing} ` : "";
  let out = "";
  for (const [name, value] of opts) {
    if (indiv) out += `${name}="${value}"\n`;
    combinedValue += ` ${value}`;
  }
  if (comb) out += `${flags.combinedKey}="${combinedValue}"\n`;
  return out;
}
