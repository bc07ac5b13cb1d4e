/**
 * `/run/flannel/subnet.env` in flanneld's exact format (pkg/subnet/subnet.go
 * WriteSubnetFile: the IPv6 pair between FLANNEL_SUBNET and FLANNEL_MTU in a dual-stack
 * network), written atomically (temp file + rename), parsed strictly; and `docker-opts`,
 * the output of flannel's mk-docker-opts.sh.
 */
import { readFileSync } from "node:fs";
import { writeFileAtomic } from "../files.ts";
import { ValidationError } from "../validation.ts";
import { type Cidr, firstHost, formatCidr, formatIp4, parseCidr, parseIp4 } from "./cidr.ts";
import { type Cidr6, firstHost6, formatCidr6, formatIp6, parseCidr6 } from "./cidr6.ts";

export interface SubnetEnv {
  /** FLANNEL_NETWORK */
  readonly network: Cidr;
  /** FLANNEL_SUBNET's prefix (the file holds its first address: 10.244.3.1/24). */
  readonly subnet: Cidr;
  /** Dual stack: FLANNEL_IPV6_NETWORK; absent or null in an IPv4-only network. */
  readonly network6?: Cidr6 | null;
  /** Dual stack: FLANNEL_IPV6_SUBNET's prefix (the file holds its first address: fd00:19:0:3::1/64). */
  readonly subnet6?: Cidr6 | null;
  readonly mtu: number;
  readonly ipMasq: boolean;
}

export function formatSubnetEnv(env: SubnetEnv): string {
  const v6 =
    env.network6 && env.subnet6
      ? `FLANNEL_IPV6_NETWORK=${formatCidr6(env.network6)}\n` +
        `FLANNEL_IPV6_SUBNET=${formatIp6(firstHost6(env.subnet6))}/${env.subnet6.len}\n`
      : "";
  return (
    `FLANNEL_NETWORK=${formatCidr(env.network)}\n` +
    `FLANNEL_SUBNET=${formatIp4(firstHost(env.subnet))}/${env.subnet.len}\n` +
    v6 +
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
  const v6 = parseIpv6Pair(kv);
  const mtuText = need("FLANNEL_MTU");
  const mtu = Number(mtuText);
  if (!/^\d+$/.test(mtuText) || mtu < 68 || mtu > 65535)
    throw new ValidationError(`FLANNEL_MTU=${mtuText} is not an MTU (68..65535)`);
  const masq = need("FLANNEL_IPMASQ");
  if (masq !== "true" && masq !== "false")
    throw new ValidationError(`FLANNEL_IPMASQ=${masq} must be true or false`);
  const base = { network, subnet: sub, mtu, ipMasq: masq === "true" };
  return v6 ? { ...base, network6: v6.network6, subnet6: v6.subnet6 } : base;
}

/** FLANNEL_IPV6_NETWORK and FLANNEL_IPV6_SUBNET: both or neither. */
function parseIpv6Pair(kv: Map<string, string>): { network6: Cidr6; subnet6: Cidr6 } | null {
  const netText = kv.get("FLANNEL_IPV6_NETWORK");
  const subText = kv.get("FLANNEL_IPV6_SUBNET");
  if (netText === undefined && subText === undefined) return null;
  if (netText === undefined)
    throw new ValidationError("FLANNEL_IPV6_NETWORK is missing (FLANNEL_IPV6_SUBNET is set)");
  if (subText === undefined)
    throw new ValidationError("FLANNEL_IPV6_SUBNET is missing (FLANNEL_IPV6_NETWORK is set)");
  const network6 = parseCidr6(netText);
  if (!network6)
    throw new ValidationError(`FLANNEL_IPV6_NETWORK=${netText} is not an IPv6 CIDR like fd00:19::/56`);
  const subnet6 = parseCidr6(subText, false);
  if (!subnet6)
    throw new ValidationError(`FLANNEL_IPV6_SUBNET=${subText} is not an address/len like fd00:19:0:3::1/64`);
  return { network6, subnet6 };
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
  /** Tartan's --ipv6 (mk-docker-opts.sh has no IPv6): add --ipv6 and --fixed-cidr-v6 from FLANNEL_IPV6_SUBNET. */
  readonly ipv6?: boolean;
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
  const v6 = flags.ipv6 && env.subnet6 ? env.subnet6 : null;
  if (v6) opts.push(["DOCKER_OPT_FIXED_CIDR_V6", `--fixed-cidr-v6=${formatCidr6(v6)}`]);
  // docker masquerades unless flannel already does
  if (!flags.noIpMasq) opts.push(["DOCKER_OPT_IPMASQ", `--ip-masq=${!env.ipMasq}`]);
  if (v6) opts.push(["DOCKER_OPT_IPV6", "--ipv6"]);
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
