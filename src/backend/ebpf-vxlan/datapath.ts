/**
 * The loaded eBPF datapath of one node: the embedded object loaded with its maps
 * bound to pins under the node's bpffs directory (a restarted agent reuses them, with
 * their contents), programs pinned beside them, typed handles on every map (lent by
 * the object, closed with it), and the attach points (TC on the bridge, the overlay
 * device and the underlay; XDP on the underlay; hooks.ts attaches). Attaching replaces
 * our previous programs atomically.
 */
import { existsSync } from "node:fs";
import {
  ABI_VERSION,
  COUNTER_NAMES,
  type Config,
  configCodec,
  type EndpointValue,
  endpointValueCodec,
  ip4KeyCodec,
  ip6KeyCodec,
  MAPS,
  memberValueCodec,
  type NexthopValue,
  nexthopValueCodec,
  PROGRAMS,
  type Subnet6Key,
  type Subnet6Value,
  type SubnetKey,
  type SubnetValue,
  subnet6KeyCodec,
  subnet6ValueCodec,
  subnetKeyCodec,
  subnetValueCodec,
  u32Codec,
  u64Codec,
} from "../../bpf/abi.ts";
import { objectId, type XdpMode, xdpAttach, xdpDetach, xdpQuery } from "../../bpf/attach.ts";
import { embeddedObject } from "../../bpf/embedded.ts";
import { BpfError } from "../../bpf/errors.ts";
import type { BpfFd } from "../../bpf/fd.ts";
import type { BpfMap } from "../../bpf/map.ts";
import { BpfObject } from "../../bpf/object.ts";
import { ensurePinDir, pinFd, removePinDir } from "../../bpf/pin.ts";
import type { Ip4 } from "../../config/cidr.ts";
import type { Ip6 } from "../../config/cidr6.ts";
import type { Logger } from "../../log.ts";
import { errorText } from "../../log.ts";
import { mapPinDir, type ProgramName } from "./facts.ts";
import { attachTc, detachTc, ourTc, ourXdp } from "./hooks.ts";

export { mapPinDir, type ProgramName } from "./facts.ts";

export interface Datapath {
  readonly subnets: BpfMap<SubnetKey, SubnetValue>;
  readonly members: BpfMap<Ip4, number>;
  readonly endpoints: BpfMap<Ip4, EndpointValue>;
  readonly config: BpfMap<number, Config>;
  readonly counters: BpfMap<number, bigint>;
  /** The programs' cache of the underlay next hop per remote node (they alone write it). */
  readonly nexthops: BpfMap<Ip4, NexthopValue>;
  /** Dual stack: the IPv6 twins (empty in an IPv4-only network). */
  readonly subnets6: BpfMap<Subnet6Key, Subnet6Value>;
  readonly members6: BpfMap<Ip6, number>;
  readonly nexthops6: BpfMap<Ip6, NexthopValue>;
  readonly endpoints6: BpfMap<Ip6, EndpointValue>;
  /** True when the maps were found pinned (a previous agent's live datapath). */
  readonly adopted: boolean;
  /** A program's fd (lent by the object: throws after close()). */
  progFd(name: ProgramName): number;
  /** A program's kernel id (what a query of an attach point answers). */
  progId(name: ProgramName): number;
  /** Counter name → sum over CPUs. */
  readCounters(): Record<string, number>;
  /** Closes the object and with it every map and program fd above; pins and attachments stay. */
  close(): void;
}

/**
 * The kernel's answers (netlink extack, which libbpf prints at warn) to clsact calls
 * whose outcome the caller expects and handles by return code: creating a clsact qdisc
 * that exists (tcAttach on a kernel without tcx: every attach after the first on a
 * device, every adopting restart), and querying a hook with no qdisc, no chain or no
 * filter of ours (tcQuery: hooks.ts looks for an older agent's clsact filter on every
 * attach, health check and cleanup; `tartan doctor`). Only these lines are demoted to debug;
 * a real failure still surfaces as the caller's BpfError.
 */
const EXPECTED_LIBBPF =
  /Kernel error message: (Exclusivity flag on, cannot modify|Parent Qdisc doesn't exists|Cannot find specified filter chain|Filter with specified priority\/protocol not found)/;

function libbpfLog(log: Logger): Logger {
  return {
    debug: (m, f) => log.debug(m, f),
    info: (m, f) => log.info(m, f),
    warn: (m, f) => (EXPECTED_LIBBPF.test(String(f?.line ?? "")) ? log.debug(m, f) : log.warn(m, f)),
    error: (m, f) => log.error(m, f),
    with: (fields) => libbpfLog(log.with(fields)),
  };
}

export interface LoadOptions {
  /** The ELF object to load (default: the embedded build/tartan.bpf.o). */
  readonly object?: Uint8Array;
}

/** Opens and loads the object with its maps bound to pins; closes it again if that fails. */
function openAndLoad(bytes: Uint8Array, bpffs: string, log: Logger): BpfObject {
  using guard = new DisposableStack();
  const obj = guard.use(BpfObject.open(bytes, { name: "tartan", log: libbpfLog(log) }));
  for (const m of Object.values(MAPS)) obj.setPinPath(m, `${mapPinDir(bpffs)}/${m}`);
  obj.load();
  guard.move();
  return obj;
}

/** Loads the object, reusing (adopting) pinned maps when compatible, recreating them when not. */
function loadAdopting(bytes: Uint8Array, bpffs: string, adopted: boolean, log: Logger): BpfObject {
  try {
    return openAndLoad(bytes, bpffs, log);
  } catch (e) {
    if (!adopted || !(e instanceof BpfError) || e.verifierLog) throw e;
    log.warn("pinned maps do not fit this version's layout; recreating them (the next apply refills them)", {
      dir: mapPinDir(bpffs),
      abi: ABI_VERSION,
      error: errorText(e),
    });
    removePinDir(mapPinDir(bpffs));
    return openAndLoad(bytes, bpffs, log);
  }
}

/**
 * Loads the embedded object, reusing (adopting) pinned maps when compatible, and pins
 * its programs. The maps and programs are lent by the object: `close()` closes them all.
 * A load that fails at any step closes whatever it had opened (the agent's watchdog
 * retries it every few seconds, so a leak here would add up).
 */
export async function loadDatapath(bpffs: string, log: Logger, opts: LoadOptions = {}): Promise<Datapath> {
  await ensurePinDir(bpffs, log);
  const adopted = existsSync(`${mapPinDir(bpffs)}/${MAPS.subnets}`);
  const bytes = opts.object ?? (await embeddedObject());
  using guard = new DisposableStack();
  const obj = guard.use(loadAdopting(bytes, bpffs, adopted, log));
  const progs = new Map<ProgramName, BpfFd>();
  const ids = new Map<ProgramName, number>();
  for (const [key, name] of Object.entries(PROGRAMS) as Array<[ProgramName, string]>) {
    const prog = obj.program(name);
    progs.set(key, prog);
    ids.set(key, objectId(prog.fd));
    pinFd(prog.fd, `${bpffs}/progs/${name}`);
  }
  const counters = obj.map(MAPS.counters, u32Codec, u64Codec, { perCpu: true });
  const dp: Datapath = {
    subnets: obj.map(MAPS.subnets, subnetKeyCodec, subnetValueCodec),
    members: obj.map(MAPS.members, ip4KeyCodec, memberValueCodec),
    endpoints: obj.map(MAPS.endpoints, ip4KeyCodec, endpointValueCodec),
    config: obj.map(MAPS.config, u32Codec, configCodec),
    counters,
    nexthops: obj.map(MAPS.nexthops, ip4KeyCodec, nexthopValueCodec),
    subnets6: obj.map(MAPS.subnets6, subnet6KeyCodec, subnet6ValueCodec),
    members6: obj.map(MAPS.members6, ip6KeyCodec, memberValueCodec),
    nexthops6: obj.map(MAPS.nexthops6, ip6KeyCodec, nexthopValueCodec),
    endpoints6: obj.map(MAPS.endpoints6, ip6KeyCodec, endpointValueCodec),
    adopted,
    progFd: (name) => progs.get(name)!.fd,
    progId: (name) => ids.get(name)!,
    readCounters() {
      const out: Record<string, number> = {};
      COUNTER_NAMES.forEach((n, i) => {
        const per = counters.lookupPerCpu(i) ?? [];
        out[n] = Number(per.reduce((a, b) => a + b, 0n));
      });
      return out;
    },
    close: () => obj.close(),
  };
  guard.move();
  return dp;
}

export type DecapAttach = { kind: "tc" } | { kind: "xdp"; mode: XdpMode };

/** Attaches the decap program chosen for the underlay and removes the other kind. */
export function attachDecap(
  dp: Datapath,
  ifindex: number,
  ifname: string,
  kind: "tc" | "xdp",
  log: Logger,
): DecapAttach {
  if (kind === "tc") {
    attachTc(ifindex, ifname, "ingress", dp.progFd("decapTc"), log);
    // a previous run's XDP decap (never someone else's XDP program)
    if (ourXdp(ifindex, ifname)) xdpDetach(ifindex, ifname);
    return { kind: "tc" };
  }
  const mode = xdpAttach(ifindex, ifname, dp.progFd("decapXdp"), "native", log);
  detachTc(ifindex, ifname, "ingress");
  return { kind: "xdp", mode };
}

export function decapAttached(ifindex: number, ifname: string, a: DecapAttach): boolean {
  if (a.kind === "tc") return ourTc(ifindex, ifname, "ingress");
  return xdpQuery(ifindex, ifname, a.mode) !== null;
}
