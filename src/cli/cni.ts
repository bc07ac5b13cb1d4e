/**
 * `tartan cni`: the CNI plugin as a command. A container runtime runs the binary (installed
 * as /opt/cni/bin/tartan) with CNI_COMMAND set, the network config on stdin and no arguments;
 * main.ts sends that straight to the plugin. Typed by a person, it explains itself.
 */
import { createEbpfEndpointSink } from "../backend/ebpf-vxlan/endpoint-sink.ts";
import { runCni } from "../cni/plugin.ts";
import { ValidationError } from "../validation.ts";
import { type Command, type Io, noArguments } from "./command.ts";
import { HELP_FLAG } from "./options.ts";

/** Runs the plugin on this process's CNI_* variables and stdin. */
export async function runCniPlugin(io: Io): Promise<number> {
  return runCni({
    env: io.env,
    stdin: await io.stdin(),
    stdout: io.out,
    stderr: io.err,
    // with ebpf-vxlan, pods go straight into the datapath's endpoint map
    endpointSink: createEbpfEndpointSink,
  });
}

export const cniCommand: Command = {
  name: "cni",
  summary: "act as the CNI plugin (what /opt/cni/bin/tartan does with CNI_COMMAND set)",
  usage:
    "CNI_COMMAND=ADD|DEL|CHECK|VERSION CNI_CONTAINERID=… CNI_NETNS=… CNI_IFNAME=… CNI_PATH=… tartan cni < CONFIG",
  about: [
    "The CNI plugin (spec 0.3.0-1.0.0), flannel's plugin behaviour: it reads subnet.env and delegates to",
    "the bridge and host-local plugins (found in CNI_PATH); a stale address on the pod bridge is repaired",
    "instead of failing; with ebpf-vxlan each pod is also written into the datapath's endpoint map.",
    "A runtime runs it as /opt/cni/bin/tartan (the same binary) with CNI_* variables and the network",
    "config on stdin; the result or a CNI error object goes to stdout.",
  ].join("\n"),
  flags: HELP_FLAG,
  notes: [
    "Example (as a runtime would, with Debian's plugins):",
    `  echo '{"cniVersion":"1.0.0","name":"cbr0","type":"tartan"}' | \\`,
    "    CNI_COMMAND=ADD CNI_CONTAINERID=pod1 CNI_NETNS=/run/netns/pod1 CNI_IFNAME=eth0 \\",
    "    CNI_PATH=/usr/lib/cni tartan cni",
  ],
  async run(p, io) {
    if (io.env.CNI_COMMAND === undefined || io.env.CNI_COMMAND === "")
      throw new ValidationError(
        "cni is the CNI plugin: a container runtime runs it with CNI_COMMAND (ADD, DEL, CHECK or VERSION) and the other CNI_* variables set and the network config on stdin (see tartan help cni)",
      );
    noArguments("cni", p.positionals);
    return runCniPlugin(io);
  },
};
