/**
 * `tartan cleanup` on a node that ran every backend (vxlan with --ip-masq, host-gw,
 * ebpf-vxlan) and had pods through the CNI plugin: afterwards `ip link`, `ip route`,
 * `nft list ruleset`, the BPF programs on every link (tcx, clsact, XDP), bpffs and the
 * CNI directories are as they were before Tartan. A second run finds nothing.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { attachments } from "../helpers/bpf-attachments.ts";
import { Lab } from "../helpers/netns.ts";
import { addPodViaCni, removePodViaCni } from "../helpers/pods.ts";
import { isRoot, requireBinary, startAgent, tartan, waitReady } from "../helpers/tartan.ts";

describe.skipIf(!isRoot())("tartan cleanup", () => {
  let lab: Lab;
  afterAll(async () => {
    await lab?.cleanup();
  });

  test("after every backend and some pods, the node is as it was before Tartan; twice is fine", async () => {
    lab = new Lab("cln");
    const node = await lab.addNode();
    // a second node so the backends have a peer to program
    const peer = await lab.addNode();
    const registry = `sqlite:${join(lab.dir, "registry.db")}`;
    const subnetFile = join(lab.dir, "node", "subnet.env");
    const bpffs = `/sys/fs/bpf/tartan-test-${lab.prefix}`;
    lab.bpffsDirs.push(bpffs, `${bpffs}-peer`);
    const cni = {
      data: join(lab.dir, "cni", "flannel"),
      ipam: join(lab.dir, "cni", "networks"),
      conf: join(lab.dir, "net.d", "10-tartan.conflist"),
      bin: join(lab.dir, "bin", "tartan"),
    };
    const snapshot = async () => ({
      links: (
        JSON.parse(await lab.must(node.ns, ["ip", "-j", "link", "show"])) as {
          ifname: string;
          address?: string;
          mtu: number;
          flags: string[];
        }[]
      )
        .map((l) => `${l.ifname} ${l.address ?? ""} ${l.mtu} ${l.flags.includes("UP") ? "up" : "down"}`)
        .sort(),
      routes: (await lab.must(node.ns, ["ip", "route", "show"])).trim().split("\n").sort(),
      nft: (await lab.must(node.ns, ["nft", "list", "ruleset"])).trim(),
      // through libbpf: bpftool 7.1 and tc do not list tcx programs
      programs: await attachments(lab, node.ns),
      bpffs: existsSync(bpffs),
      cni: [cni.data, cni.ipam, cni.conf, cni.bin].filter(existsSync),
    });
    const before = await snapshot();

    // what an installation leaves: the conflist and the plugin binary
    for (const p of [cni.conf, cni.bin]) {
      mkdirSync(join(p, ".."), { recursive: true });
      writeFileSync(p, "installed by the DaemonSet\n");
    }
    const cases: [string, string[]][] = [
      ["vxlan", ["--ip-masq"]],
      ["host-gw", []],
      ["ebpf-vxlan", []],
    ];
    for (const [backend, flags] of cases) {
      writeFileSync(
        join(lab.dir, "net.json"),
        JSON.stringify({
          Network: "198.19.0.0/16",
          Backend: { Type: backend === "host-gw" ? "host-gw" : "vxlan" },
        }),
      );
      expect(
        (await tartan(["config", "set", join(lab.dir, "net.json"), `--registry=${registry}`])).code,
      ).toBe(0);
      const agents = [
        startAgent(lab, {
          node,
          name: `a-${backend}`,
          registry,
          backend,
          subnetFile,
          extra: [`--bpffs=${bpffs}`, ...flags],
        }),
        startAgent(lab, {
          node: peer,
          name: `b-${backend}`,
          registry,
          backend,
          subnetFile: join(lab.dir, "peer", "subnet.env"),
          extra: [`--bpffs=${bpffs}-peer`],
        }),
      ];
      await waitReady(lab, node.ns, agents[0]!);
      await waitReady(lab, peer.ns, agents[1]!);
      const pod = await addPodViaCni(lab, { ns: node.ns, index: 1 }, subnetFile, {
        binary: requireBinary(),
        name: `pod-${backend}`,
      });
      expect(pod.ip).toMatch(/^198\.19\./);
      // the runtime deletes the pod (CNI DEL, then its namespace), the agents stop
      await removePodViaCni(lab, { ns: node.ns, index: 1 }, subnetFile, pod, { binary: requireBinary() });
      for (const a of agents) await lab.stop(a);
    }
    // the ip-masq table, the programs and the pod bridge are really there before cleanup
    expect(await lab.must(node.ns, ["nft", "list", "ruleset"])).toContain("table ip tartan");
    expect(await attachments(lab, node.ns)).toContain("eth0 tcx/ingress tartan_decap_tc");
    expect((await lab.exec(node.ns, ["ip", "link", "show", "cni0"])).code).toBe(0);

    const args = [
      "cleanup",
      `--bpffs=${bpffs}`,
      `--subnet-file=${subnetFile}`,
      "--remove-subnet-file",
      `--docker-env=${join(lab.dir, "docker_opts.env")}`,
      `--cni-data-dir=${join(lab.dir, "cni")}`,
      `--cni-ipam-dir=${cni.ipam}`,
      `--cni-conf-file=${cni.conf}`,
      `--cni-bin=${cni.bin}`,
    ];
    const first = await lab.exec(node.ns, [requireBinary(), ...args]);
    expect(first.code).toBe(0);
    for (const what of [
      "eBPF programs",
      "vxlan device flannel.1",
      "nft table ip tartan",
      "pod bridge cni0",
      "CNI config",
      "CNI plugin binary",
      `file ${subnetFile}`,
    ])
      expect(first.stdout).toContain(what);
    const after = await snapshot();
    expect(after).toEqual(before);
    expect(existsSync(subnetFile)).toBe(false);

    const second = await lab.exec(node.ns, [requireBinary(), ...args]);
    expect(second.code).toBe(0);
    expect(second.stdout).toContain("nothing to remove");
    // a run that finds nothing claims to have removed nothing, on stdout or in its log
    expect(second.stdout).not.toContain("removed");
    expect(second.stderr).not.toContain("removed");
    expect(await snapshot()).toEqual(before);
  }, 120_000);
});
