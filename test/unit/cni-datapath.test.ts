/**
 * How the CNI plugin finds the running agent's datapath: the file the agent writes next
 * to its subnet file (any --node-name, any --bpffs), read back and validated; and the
 * ebpf-vxlan sink saying loudly, without failing, why a pod was not registered. No root:
 * every case here stops before a BPF map would be opened.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  datapathFileFor,
  describeDatapath,
  publishDatapath,
  readDatapathFile,
} from "../../src/backend/datapath-file.ts";
import { createEbpfEndpointSink } from "../../src/backend/ebpf-vxlan/endpoint-sink.ts";
import { createLogger } from "../../src/log.ts";

const dir = mkdtempSync(join(tmpdir(), "tartan-dp-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const pod = {
  ip: "198.19.1.5",
  ifindex: 12,
  hostVeth: "veth0",
  mac: "02:aa:00:00:00:05",
  containerId: "c1",
  ifname: "eth0",
  netns: "/run/netns/x",
  bridge: "cni0",
};

function recordingLog() {
  const lines: string[] = [];
  return { lines, log: createLogger({ level: "debug", write: (l) => lines.push(l) }) };
}

describe("the agent's datapath file", () => {
  test("sits next to the subnet file, named after it", () => {
    expect(datapathFileFor("/run/flannel/subnet.env")).toBe("/run/flannel/subnet.datapath.json");
    expect(datapathFileFor("/tmp/lab/n1")).toBe("/tmp/lab/n1.datapath.json");
  });

  test("names the pin directory for ebpf-vxlan only, and reads back as written", () => {
    const subnetFile = join(dir, "a", "subnet.env");
    const path = publishDatapath(subnetFile, { backend: "ebpf-vxlan", node: "n1", bpffs: "/sys/fs/bpf/x" });
    expect(path).toBe(join(dir, "a", "subnet.datapath.json"));
    expect(readDatapathFile(subnetFile)).toEqual({
      kind: "ok",
      path,
      info: { version: 1, node: "n1", backend: "ebpf-vxlan", bpffs: "/sys/fs/bpf/x" },
    });
    expect(describeDatapath({ backend: "vxlan", node: "n1", bpffs: "/sys/fs/bpf/x" }).bpffs).toBeNull();
  });

  test("missing and invalid files say which file and why", () => {
    expect(readDatapathFile(join(dir, "none", "subnet.env"))).toEqual({
      kind: "missing",
      path: join(dir, "none", "subnet.datapath.json"),
    });
    const subnetFile = join(dir, "bad.env");
    writeFileSync(datapathFileFor(subnetFile), '{"version":1,"node":"n1","backend":"udp","bpffs":null}');
    const r = readDatapathFile(subnetFile);
    expect(r.kind).toBe("invalid");
    expect(r.kind === "invalid" && r.reason).toContain(
      "backend must be one of ebpf-vxlan, vxlan, host-gw, alloc",
    );
  });
});

describe("the ebpf-vxlan endpoint sink without the agent's datapath", () => {
  test("no datapath file: ADD's registration is skipped with a warning naming the file", async () => {
    const { lines, log } = recordingLog();
    const subnetFile = join(dir, "no-agent", "subnet.env");
    await createEbpfEndpointSink({ conf: { subnetFile }, log }).add(pod);
    const warn = lines.filter((l) => l.includes("level=warn"));
    expect(warn.length).toBe(1);
    expect(warn[0]).toContain("no datapath file from the tartan agent");
    expect(warn[0]).toContain(datapathFileFor(subnetFile));
  });

  test("DEL without it stays quiet (debug only)", async () => {
    const { lines, log } = recordingLog();
    await createEbpfEndpointSink({ conf: { subnetFile: join(dir, "no-agent", "subnet.env") }, log }).remove(
      pod.ip,
    );
    expect(lines.filter((l) => !l.includes("level=debug"))).toEqual([]);
  });

  test("an agent on another backend: nothing to register, nothing to warn about", async () => {
    const { lines, log } = recordingLog();
    const subnetFile = join(dir, "vx", "subnet.env");
    publishDatapath(subnetFile, { backend: "vxlan", node: "n1", bpffs: "/sys/fs/bpf/unused" });
    await createEbpfEndpointSink({ conf: { subnetFile }, log }).add(pod);
    expect(lines.filter((l) => !l.includes("level=debug"))).toEqual([]);
  });

  test("an ebpf-vxlan agent whose pins are gone: a warning naming the missing pin", async () => {
    const { lines, log } = recordingLog();
    const subnetFile = join(dir, "gone", "subnet.env");
    publishDatapath(subnetFile, { backend: "ebpf-vxlan", node: "n7", bpffs: join(dir, "no-pins") });
    await createEbpfEndpointSink({ conf: { subnetFile }, log }).add(pod);
    const warn = lines.filter((l) => l.includes("level=warn"));
    expect(warn.length).toBe(1);
    expect(warn[0]).toContain("endpoint map is not pinned");
    expect(warn[0]).toContain(join(dir, "no-pins", "maps", "tartan_endpoints"));
  });
});
