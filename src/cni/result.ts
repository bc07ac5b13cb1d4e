/**
 * CNI results: validation of a delegate's answer, conversion between spec versions
 * (0.3.x/0.4.0 carry `ips[].version`, 1.0.0 does not), and reading the pod's endpoint
 * (IP, MAC, host-side veth) out of a bridge result. Pure.
 */
import * as v from "valibot";
import { issuesText } from "../validation.ts";
import { CNI_ERR, CniError } from "./errors.ts";
import { type CniVersion, compareVersions } from "./version.ts";

const InterfaceSchema = v.looseObject({
  name: v.string(),
  mac: v.optional(v.string()),
  sandbox: v.optional(v.string()),
});

const IpSchema = v.looseObject({
  version: v.optional(v.picklist(["4", "6"])),
  address: v.pipe(v.string(), v.includes("/", "address must be ADDRESS/LEN")),
  gateway: v.optional(v.string()),
  interface: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0))),
});

export const ResultSchema = v.looseObject({
  cniVersion: v.optional(v.string()),
  interfaces: v.optional(v.array(InterfaceSchema)),
  ips: v.optional(v.array(IpSchema)),
  routes: v.optional(v.array(v.looseObject({ dst: v.string(), gw: v.optional(v.string()) }))),
  dns: v.optional(v.record(v.string(), v.unknown())),
});

export type CniResult = v.InferOutput<typeof ResultSchema>;

/** Validates a result (a delegate's stdout, or prevResult); `what` names it in the error (code 6). */
export function parseResult(input: unknown, what: string): CniResult {
  const r = v.safeParse(ResultSchema, input);
  if (!r.success) throw new CniError(CNI_ERR.DECODE_FAILURE, `${what}: ${issuesText(r.issues)}`);
  return r.output;
}

/**
 * The same result in spec version `to`. 1.0.0 dropped `ips[].version`; older versions
 * need it ("4" or "6", from the address). Every other field is kept as it is.
 */
export function convertResult(result: CniResult, to: CniVersion): CniResult {
  const modern = compareVersions(to, "1.0.0") >= 0;
  const ips = result.ips?.map((ip) => {
    const { version: _drop, ...rest } = ip;
    if (modern) return rest;
    return { ...rest, version: ip.address.includes(":") ? ("6" as const) : ("4" as const) };
  });
  return { ...result, cniVersion: to, ...(ips ? { ips } : {}) };
}

/**
 * The routes as the bridge plugin installed them: a route without `gw` goes via the
 * gateway of the result's first IP of the same family (ipam.ConfigureIface does that). The
 * bridge plugin's CHECK compares gateways literally, so a result from its own ADD fails its
 * own CHECK unless prevResult says so explicitly.
 */
export function routesWithGateways(result: CniResult): CniResult {
  if (!result.routes) return result;
  const gw4 = result.ips?.find((i) => !i.address.includes(":") && i.gateway)?.gateway;
  const gw6 = result.ips?.find((i) => i.address.includes(":") && i.gateway)?.gateway;
  const routes = result.routes.map((r) => {
    if (r.gw) return r;
    const gw = r.dst.includes(":") ? gw6 : gw4;
    return gw ? { ...r, gw } : r;
  });
  return { ...result, routes };
}

export interface PodEndpoint {
  /** Pod IPv4 address, without the length. */
  readonly ip: string;
  /** Pod IPv6 address (dual stack), without the length. */
  readonly ip6?: string;
  readonly mac: string;
  readonly hostVeth: string;
  readonly hostMac?: string;
}

/**
 * The pod's endpoint in a bridge result: the IPv4 address (and in dual stack the IPv6 one)
 * on the sandboxed interface named `ifname`, that interface's MAC, and the one host-side
 * interface that is not the bridge. Null when the result does not describe one (another
 * delegate, IPv6 only).
 */
export function podEndpoint(result: CniResult, ifname: string, bridge: string | null): PodEndpoint | null {
  const ifaces = result.interfaces ?? [];
  const podIdx = ifaces.findIndex((i) => i.sandbox && i.name === ifname);
  if (podIdx < 0) return null;
  const pod = ifaces[podIdx]!;
  const onPod = (result.ips ?? []).filter((x) => x.interface === undefined || x.interface === podIdx);
  const ip = onPod.find((x) => !x.address.includes(":"));
  const ip6 = onPod.find((x) => x.address.includes(":"));
  const host = ifaces.filter((i) => !i.sandbox && i.name !== bridge);
  if (!ip || !pod.mac || host.length !== 1) return null;
  const hostIf = host[0]!;
  return {
    ip: ip.address.split("/")[0]!,
    ...(ip6 ? { ip6: ip6.address.split("/")[0]! } : {}),
    mac: pod.mac.toLowerCase(),
    hostVeth: hostIf.name,
    ...(hostIf.mac ? { hostMac: hostIf.mac.toLowerCase() } : {}),
  };
}
