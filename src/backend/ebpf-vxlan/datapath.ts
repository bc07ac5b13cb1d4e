/**
 * The loaded eBPF datapath of one node: the embedded object loaded with its maps
 * bound to pins under the node's bpffs directory (a restarted agent reuses them, with
 * their contents), programs pinned beside them, typed handles on every map, and the
 * attach points (TC on the bridge, the overlay device and the underlay; XDP on the
 * underlay). Attaching replaces our previous programs atomically, and TC programs go
 * through tcx where the kernel has it: no qdisc, so attaching never stalls a device.
 */
import { existsSync } from "node:fs";
import {
  COUNTER_NAMES,
  type Config,
  configCodec,
  type EndpointValue,
  endpointValueCodec,
  ip4KeyCodec,
  MAPS,
  memberValueCodec,
  PROGRAMS,
  type SubnetKey,
  type SubnetValue,
  subnetKeyCodec,
  subnetValueCodec,
  u32Codec,
  u64Codec,
} from "../../bpf/abi.ts";
import {
  programName,
  type TcDirection,
  tcAttach,
  tcDetach,
  tcQuery,
  tcxAttach,
  tcxDetach,
  tcxQuery,
  type XdpMode,
  xdpAttach,
  xdpDetach,
  xdpQuery,
} from "../../bpf/attach.ts";
import { embeddedObject } from "../../bpf/embedded.ts";
import { BpfError } from "../../bpf/errors.ts";
import { BpfMap } from "../../bpf/map.ts";
import { BpfObject } from "../../bpf/object.ts";
import { ensurePinDir, pinFd, removePinDir } from "../../bpf/pin.ts";
import type { Ip4 } from "../../config/cidr.ts";
import type { Logger } from "../../log.ts";
import { errorText } from "../../log.ts";

export type ProgramName = keyof typeof PROGRAMS;

export interface Datapath {
  readonly subnets: BpfMap<SubnetKey, SubnetValue>;
  readonly members: BpfMap<Ip4, number>;
  readonly endpoints: BpfMap<Ip4, EndpointValue>;
  readonly config: BpfMap<number, Config>;
  readonly counters: BpfMap<number, bigint>;
  /** True when the maps were found pinned (a previous agent's live datapath). */
  readonly adopted: boolean;
  progFd(name: ProgramName): number;
  /** Counter name → sum over CPUs. */
  readCounters(): Record<string, number>;
  close(): void;
}

export function mapPinDir(bpffs: string): string {
  return `${bpffs}/maps`;
}

function openAndLoad(bytes: Uint8Array, bpffs: string, log: Logger): BpfObject {
  const obj = BpfObject.open(bytes, { name: "tartan", log });
  try {
    for (const m of Object.values(MAPS)) obj.setPinPath(m, `${mapPinDir(bpffs)}/${m}`);
    obj.load();
    return obj;
  } catch (e) {
    obj.close();
    throw e;
  }
}

/** Loads the embedded object, reusing (adopting) pinned maps when compatible. */
export async function loadDatapath(bpffs: string, log: Logger): Promise<Datapath> {
  await ensurePinDir(bpffs, log);
  const adopted = existsSync(`${mapPinDir(bpffs)}/${MAPS.subnets}`);
  const bytes = await embeddedObject();
  let obj: BpfObject;
  try {
    obj = openAndLoad(bytes, bpffs, log);
  } catch (e) {
    if (!adopted || !(e instanceof BpfError) || e.verifierLog) throw e;
    log.warn("pinned maps do not fit this version's layout; recreating them (the next apply refills them)", {
      dir: mapPinDir(bpffs),
      error: errorText(e),
    });
    removePinDir(mapPinDir(bpffs));
    obj = openAndLoad(bytes, bpffs, log);
  }
  const progs = new Map<ProgramName, number>();
  for (const [key, name] of Object.entries(PROGRAMS) as Array<[ProgramName, string]>) {
    const fd = obj.programFd(name);
    progs.set(key, fd);
    pinFd(fd, `${bpffs}/progs/${name}`);
  }
  const counters = new BpfMap(MAPS.counters, obj.mapFd(MAPS.counters), u32Codec, u64Codec, { perCpu: true });
  return {
    subnets: new BpfMap(MAPS.subnets, obj.mapFd(MAPS.subnets), subnetKeyCodec, subnetValueCodec),
    members: new BpfMap(MAPS.members, obj.mapFd(MAPS.members), ip4KeyCodec, memberValueCodec),
    endpoints: new BpfMap(MAPS.endpoints, obj.mapFd(MAPS.endpoints), ip4KeyCodec, endpointValueCodec),
    config: new BpfMap(MAPS.config, obj.mapFd(MAPS.config), u32Codec, configCodec),
    counters,
    adopted,
    progFd: (name) => progs.get(name)!,
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

/** Is the program with this kernel id one of ours (by name)? */
const ours = (id: number) => (programName(id) ?? "").startsWith("tartan_");

/** Is one of our programs (by name) attached as XDP to this interface, in either mode? */
export function ourXdp(ifindex: number, ifname: string): boolean {
  return (["native", "generic"] as const).some((m) => {
    const id = xdpQuery(ifindex, ifname, m);
    return id !== null && ours(id);
  });
}

/** Our programs on a tcx hook (none, or null when the kernel has no tcx). */
function ourTcx(ifindex: number, ifname: string, dir: TcDirection): number[] | null {
  return tcxQuery(ifindex, ifname, dir)?.filter(ours) ?? null;
}

/** Our clsact filter (our handle and priority, one of our programs) on this hook? */
function ourClsact(ifindex: number, ifname: string, dir: TcDirection): boolean {
  const id = tcQuery(ifindex, ifname, dir);
  return id !== null && ours(id);
}

/**
 * Attaches our TC program to a hook, or atomically replaces the one there, through tcx
 * (kernel 6.6+): attaching a first clsact filter creates the clsact qdisc, which stops
 * an up device's transmit queues for a moment and drops what it sends meanwhile (traced
 * in docs/reliability.md, finding 9); tcx needs no qdisc. A clsact filter an older agent
 * left is removed afterwards (tcx runs first and decides, so it no longer sees packets);
 * the qdisc itself stays, as deleting it would stall the device again. Without tcx the
 * clsact filter is used, with that moment on first attach.
 */
export function attachTc(
  ifindex: number,
  ifname: string,
  dir: TcDirection,
  progFd: number,
  log?: Logger,
): void {
  const mine = ourTcx(ifindex, ifname, dir);
  if (mine === null) {
    tcAttach(ifindex, ifname, dir, progFd);
    return;
  }
  tcxAttach(ifindex, ifname, dir, progFd, mine[0] ?? null);
  for (const id of mine.slice(1)) tcxDetach(ifindex, ifname, dir, id);
  if (ourClsact(ifindex, ifname, dir) && tcDetach(ifindex, ifname, dir))
    log?.info("replaced a clsact filter of an older agent with tcx", { iface: ifname, dir });
}

/** Removes our TC programs from a hook, tcx and clsact; false when there were none. */
export function detachTc(ifindex: number, ifname: string, dir: TcDirection): boolean {
  let any = false;
  for (const id of ourTcx(ifindex, ifname, dir) ?? []) any = tcxDetach(ifindex, ifname, dir, id) || any;
  if (ourClsact(ifindex, ifname, dir)) any = tcDetach(ifindex, ifname, dir) || any;
  return any;
}

/** Is one of our programs attached to this TC hook (tcx or clsact)? */
export function ourTc(ifindex: number, ifname: string, dir: TcDirection): boolean {
  return (ourTcx(ifindex, ifname, dir)?.length ?? 0) > 0 || ourClsact(ifindex, ifname, dir);
}
