/**
 * The datapath as other processes reach it, through its pins under --bpffs: typed maps
 * opened from their pins (the CNI plugin's sink, `tartan doctor`; the caller owns and
 * closes them), and the agent pinning its live maps again when a pin was removed by hand.
 */
import { existsSync } from "node:fs";
import {
  type EndpointValue,
  endpointValueCodec,
  ip4KeyCodec,
  ip6KeyCodec,
  memberValueCodec,
  type Subnet6Key,
  type Subnet6Value,
  type SubnetKey,
  type SubnetValue,
  subnet6KeyCodec,
  subnet6ValueCodec,
  subnetKeyCodec,
  subnetValueCodec,
} from "../../bpf/abi.ts";
import { BpfMap, type Codec } from "../../bpf/map.ts";
import { pinFd } from "../../bpf/pin.ts";
import type { Ip4 } from "../../config/cidr.ts";
import type { Ip6 } from "../../config/cidr6.ts";
import type { Logger } from "../../log.ts";
import type { Datapath } from "./datapath.ts";
import { mapPin, mapPinDir } from "./facts.ts";

export interface PinnedMaps {
  readonly subnets: BpfMap<SubnetKey, SubnetValue>;
  readonly members: BpfMap<Ip4, number>;
  readonly endpoints: BpfMap<Ip4, EndpointValue>;
  readonly subnets6: BpfMap<Subnet6Key, Subnet6Value>;
  readonly members6: BpfMap<Ip6, number>;
  readonly endpoints6: BpfMap<Ip6, EndpointValue>;
}

const CODECS: { readonly [K in keyof PinnedMaps]: readonly [Codec<unknown>, Codec<unknown>] } = {
  subnets: [subnetKeyCodec, subnetValueCodec],
  members: [ip4KeyCodec, memberValueCodec],
  endpoints: [ip4KeyCodec, endpointValueCodec],
  subnets6: [subnet6KeyCodec, subnet6ValueCodec],
  members6: [ip6KeyCodec, memberValueCodec],
  endpoints6: [ip6KeyCodec, endpointValueCodec],
};

/** The pinned map, typed by the ABI's codecs, owned by the caller (close it); null when nothing is pinned there. */
export function openPinnedMap<K extends keyof PinnedMaps>(bpffs: string, which: K): PinnedMaps[K] | null {
  const [key, value] = CODECS[which];
  return BpfMap.openPinned(mapPin(bpffs, which), key, value) as PinnedMaps[K] | null;
}

/** Runs `fn` on the pinned map and closes it; null when nothing is pinned there. */
export function withPinnedMap<K extends keyof PinnedMaps, T>(
  bpffs: string,
  which: K,
  fn: (m: PinnedMaps[K]) => T,
): T | null {
  using m = openPinnedMap(bpffs, which);
  return m === null ? null : fn(m);
}

/**
 * A restarted agent adopts the live maps through their pins; a pin removed by hand would
 * make that restart start empty. The live maps are still held here: pin them again.
 */
export function repairPins(d: Datapath, bpffs: string, log: Logger): void {
  for (const m of [
    d.subnets,
    d.members,
    d.endpoints,
    d.config,
    d.counters,
    d.nexthops,
    d.subnets6,
    d.members6,
    d.nexthops6,
    d.endpoints6,
  ]) {
    const pin = `${mapPinDir(bpffs)}/${m.name}`;
    if (existsSync(pin)) continue;
    pinFd(m.fd, pin);
    log.warn("a pinned map was removed; pinned the live map again", { pin });
  }
}
