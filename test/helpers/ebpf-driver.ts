/**
 * A stand-in agent for datapath tests: runs the ebpf-vxlan backend in the current
 * network namespace with a fixed local lease and fixed peers (no registry), prints
 * "ready" and serves until SIGTERM. Used by test/e2e/ebpf-datapath.test.ts.
 *
 *   bun test/helpers/ebpf-driver.ts --node-name=n1 --iface=eth0 --bpffs=DIR --decap=tc \
 *     --network=198.19.0.0/16 --subnet=198.19.1.0/24 --peer=n2,198.18.0.2,198.19.2.0/24 ...
 */
import { parseArgs } from "node:util";
import { cleanupEbpfVxlan, createEbpfVxlanBackend, vtepMacFor } from "../../src/backend/ebpf-vxlan/index.ts";
import { cidrToKey, parseCidr, parseIp4 } from "../../src/config/cidr.ts";
import { parseNetworkConfig } from "../../src/config/network.ts";
import type { DecapMode } from "../../src/config/options.ts";
import type { Lease } from "../../src/lease/lease.ts";
import { createLogger } from "../../src/log.ts";
import { getLink, listAddrs } from "../../src/net/ip.ts";

const { values: a } = parseArgs({
  options: {
    "node-name": { type: "string" },
    iface: { type: "string" },
    bpffs: { type: "string" },
    decap: { type: "string", default: "auto" },
    network: { type: "string" },
    subnet: { type: "string" },
    peer: { type: "string", multiple: true, default: [] },
    /** After ready: apply this many synthetic remote leases at once, print "bulk N ms=..." and exit. */
    bulk: { type: "string" },
    /** Run cleanupEbpfVxlan instead of the backend, print "cleaned" and exit. */
    cleanup: { type: "boolean", default: false },
  },
});

const log = createLogger({ level: "info" }, { node: a["node-name"] });
if (a.cleanup) {
  await cleanupEbpfVxlan({ log, bpffs: a.bpffs!, vni: 1, iface: a.iface });
  console.log("cleaned");
  process.exit(0);
}

const link = (await getLink(a.iface!))!;
const addr = (await listAddrs(a.iface!)).find((x) => x.family === "inet")!;
const ifaceIp = parseIp4(addr.local)!;
const config = parseNetworkConfig(JSON.stringify({ Network: a.network, Backend: { Type: "ebpf-vxlan" } }));

function lease(subnet: string, ip: number, name: string): Lease {
  const sn = parseCidr(subnet)!;
  return {
    subnet: sn,
    key: cidrToKey(sn),
    attrs: {
      publicIp: ip,
      backendType: "vxlan",
      vxlan: { VNI: config.backend.vni, VtepMAC: vtepMacFor(name, ip) },
    },
    expiresAt: null,
    revision: 1,
  };
}

const backend = createEbpfVxlanBackend({
  log,
  nodeName: a["node-name"]!,
  config,
  extIface: {
    name: link.ifname,
    index: link.ifindex,
    publicIp: ifaceIp,
    ifaceIp,
    mtu: link.mtu,
    mac: link.address,
  },
  bpffs: a.bpffs!,
  decap: a.decap as DecapMode,
});
const ann = await backend.prepare();
await backend.setLocal(lease(a.subnet!, ifaceIp, a["node-name"]!));
const peers = a.peer.map((p) => {
  const [name, ip, subnet] = p.split(",");
  return lease(subnet!, parseIp4(ip!)!, name!);
});
await backend.apply({ add: peers, update: [], remove: [] });
const health = await backend.health();
console.log(`ready vtep=${ann.vxlan?.VtepMAC} mtu=${ann.mtu} health=${health.ok}`);

if (a.bulk) {
  // /24s from 10.0.0.0 up, each from its own node address in 198.18.128.0/17
  const n = Number(a.bulk);
  const many = Array.from({ length: n }, (_, i) =>
    lease(`10.${(i >> 8) & 255}.${i & 255}.0/24`, (parseIp4("198.18.128.0")! + i) >>> 0, `bulk${i}`),
  );
  const t0 = performance.now();
  await backend.apply({ add: many, update: [], remove: [] });
  const ms = performance.now() - t0;
  const c = await backend.counters();
  const t1 = performance.now();
  await backend.apply({ add: [], update: [], remove: many });
  const msRemove = performance.now() - t1;
  const after = await backend.counters();
  console.log(
    `bulk ${n} ms=${ms.toFixed(1)} subnets=${c.subnets} members=${c.members} remove_ms=${msRemove.toFixed(1)} left=${after.subnets}`,
  );
  await backend.close();
  process.exit(0);
}

process.on("SIGTERM", () => {
  void backend.close().then(() => process.exit(0));
});
setInterval(() => {}, 1 << 30);
