/**
 * Which BPF programs are attached to a namespace's interfaces, as "DEV HOOK PROGRAM"
 * lines: hooks "tcx/ingress", "tcx/egress", "clsact/ingress", "clsact/egress", "xdp".
 * `bpftool net show` before 7.3 (Debian 12 ships 7.1) does not list tcx attachments,
 * which the ebpf-vxlan backend uses, so tests ask the kernel through our own FFI:
 *
 *   bun test/helpers/bpf-attachments.ts      (run inside the namespace) prints JSON
 */
import { namesProgram } from "../../src/backend/ebpf-vxlan/facts.ts";
import { PROGRAMS } from "../../src/bpf/abi.ts";
import { programName, tcQuery, tcxQuery, xdpQuery } from "../../src/bpf/attach.ts";
import { listLinks } from "../../src/net/ip.ts";
import type { Lab } from "./netns.ts";

const BUN = `${import.meta.dir}/../../node_modules/.bin/bun`;

/** Every attachment in the current network namespace. */
export async function localAttachments(): Promise<string[]> {
  const out: string[] = [];
  // the kernel keeps 15 characters of a name: give ours in full
  const full = Object.values(PROGRAMS) as string[];
  const name = (id: number) => {
    const n = programName(id) ?? `id ${id}`;
    return full.find((f) => namesProgram(n, f)) ?? n;
  };
  for (const l of await listLinks()) {
    for (const dir of ["ingress", "egress"] as const) {
      for (const id of tcxQuery(l.ifindex, l.ifname, dir) ?? [])
        out.push(`${l.ifname} tcx/${dir} ${name(id)}`);
      const id = tcQuery(l.ifindex, l.ifname, dir);
      if (id !== null) out.push(`${l.ifname} clsact/${dir} ${name(id)}`);
    }
    for (const mode of ["native", "generic"] as const) {
      const id = xdpQuery(l.ifindex, l.ifname, mode);
      if (id !== null) out.push(`${l.ifname} xdp ${name(id)}`);
    }
  }
  return out.sort();
}

/** Every attachment in namespace `ns`, sorted. */
export async function attachments(lab: Lab, ns: string): Promise<string[]> {
  return JSON.parse(await lab.must(ns, [BUN, import.meta.path])) as string[];
}

if (import.meta.main) console.log(JSON.stringify(await localAttachments()));
