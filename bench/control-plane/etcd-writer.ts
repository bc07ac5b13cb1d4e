/**
 * Benchmark helper (bench/control-plane.ts), run inside the etcd host's namespace:
 * writes fake leases into etcd the way flannel nodes do — per lease one etcd lease grant
 * and one put of the subnet key attached to it — either paced at RATE puts per second
 * or as fast as it can (RATE 0, 64 writes in flight). Prints one JSON line when done:
 * {"count":n,"first":epochMs,"last":epochMs} (when the first and the last put were acknowledged).
 *   bun etcd-writer.ts ENDPOINT N_TOTAL FROM COUNT RATE GENERATION
 * N_TOTAL picks the network (leases.ts); GENERATION > 0 rewrites leases with a new VTEP MAC.
 */
import { Etcd3 } from "etcd3";
import { benchLease, benchNetwork } from "./leases.ts";

const [endpoint, total, from, count, rate, generation] = process.argv.slice(2);
const net = benchNetwork(Number(total));
const client = new Etcd3({ hosts: [endpoint!] });
// WRITER_TTL_S=0: no etcd lease (a reservation), for measuring what the expiry lookups cost
const TTL_S = Number(process.env.WRITER_TTL_S ?? 24 * 3600);
const start = Number(from);
const n = Number(count);
const perSecond = Number(rate);
const gen = Number(generation);

let first = 0;
let last = 0;
let next = 0;
const t0 = performance.now();

async function writeOne(i: number): Promise<void> {
  const { key, value } = benchLease(net, start + i, gen);
  const lease = TTL_S > 0 ? (await client.leaseClient.leaseGrant({ TTL: TTL_S, ID: 0 })).ID : "0";
  await client.kv.put({
    key: Buffer.from(`/coreos.com/network/subnets/${key}`),
    value: Buffer.from(value),
    lease,
  });
  const now = Date.now();
  if (first === 0) first = now;
  last = Math.max(last, now);
}

async function worker(): Promise<void> {
  for (let i = next++; i < n; i = next++) {
    if (perSecond > 0) {
      const due = t0 + (i * 1000) / perSecond;
      const wait = due - performance.now();
      if (wait > 0) await Bun.sleep(wait);
    }
    await writeOne(i);
  }
}

await Promise.all(Array.from({ length: perSecond > 0 ? 8 : 64 }, worker));
console.log(JSON.stringify({ count: n, first, last }));
client.close();
process.exit(0);
