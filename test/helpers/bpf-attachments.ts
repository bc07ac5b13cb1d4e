/**
 * Which BPF programs are attached to a namespace's interfaces, as "DEV HOOK PROGRAM"
 * lines (attachments) or with the programs' kernel ids (hooked): hooks "tcx/ingress",
 * "tcx/egress", "clsact/ingress", "clsact/egress", "xdp". `bpftool net show` before 7.3
 * (Debian 12 ships 7.1) does not list tcx attachments, which the ebpf-vxlan backend
 * uses, so tests ask the kernel through our own FFI:
 *
 *   bun test/helpers/bpf-attachments.ts      (run inside the namespace) prints JSON
 */
import { namesProgram } from "../../src/backend/ebpf-vxlan/facts.ts";
import { PROGRAMS } from "../../src/bpf/abi.ts";
import { programName, tcQuery, tcxQuery, xdpQuery } from "../../src/bpf/attach.ts";
import { listLinks } from "../../src/net/ip.ts";
import type { Lab } from "./netns.ts";

const BUN = `${import.meta.dir}/../../node_modules/.bin/bun`;

/** One program on one hook of one link. */
export interface Hooked {
  readonly dev: string;
  readonly hook: string;
  readonly program: string;
  readonly id: number;
}

/** Every attachment in the current network namespace. */
export async function localHooked(): Promise<Hooked[]> {
  const out: Hooked[] = [];
  // the kernel keeps 15 characters of a name: give ours in full
  const full = Object.values(PROGRAMS) as string[];
  const add = (dev: string, hook: string, id: number) => {
    const n = programName(id) ?? `id ${id}`;
    out.push({ dev, hook, program: full.find((f) => namesProgram(n, f)) ?? n, id });
  };
  for (const l of await listLinks()) {
    for (const dir of ["ingress", "egress"] as const) {
      for (const id of tcxQuery(l.ifindex, l.ifname, dir) ?? []) add(l.ifname, `tcx/${dir}`, id);
      const id = tcQuery(l.ifindex, l.ifname, dir);
      if (id !== null) add(l.ifname, `clsact/${dir}`, id);
    }
    for (const mode of ["native", "generic"] as const) {
      const id = xdpQuery(l.ifindex, l.ifname, mode);
      if (id !== null) add(l.ifname, "xdp", id);
    }
  }
  return out;
}

const line = (h: Hooked) => `${h.dev} ${h.hook} ${h.program}`;

/** Every attachment in namespace `ns`, with the programs' ids. */
export async function hooked(lab: Lab, ns: string): Promise<Hooked[]> {
  return JSON.parse(await lab.must(ns, [BUN, import.meta.path])) as Hooked[];
}

/** Every attachment in namespace `ns`, sorted. */
export async function attachments(lab: Lab, ns: string): Promise<string[]> {
  return (await hooked(lab, ns)).map(line).sort();
}

if (import.meta.main) console.log(JSON.stringify(await localHooked()));
