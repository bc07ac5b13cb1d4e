/**
 * The deploy files: both Kubernetes manifests (tartan.yaml, the kube subnet manager, and
 * tartan-etcd.yaml) against an offline schema (and `kubectl apply
 * --dry-run=client` against a stub API server that only answers discovery), the conflist
 * against the plugin's own config parser, the DaemonSet's command line against the
 * agent's flag parser, the init container's install script run for real in a temp dir,
 * and the systemd unit through `systemd-analyze verify` and its ExecStartPre/Post run for real.
 */
import { afterAll, describe, expect, test } from "bun:test";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseAgentOptions } from "../../src/cli/options.ts";
import { parseCniEnv, parseNetConf } from "../../src/cni/conf.ts";
import { parseNetworkConfig } from "../../src/config/network.ts";
import { checkManifest } from "./cni-k8s-schema.ts";

const ROOT = resolve(import.meta.dir, "../..");
const CONFLIST = join(ROOT, "deploy/cni/10-tartan.conflist");
const UNIT = join(ROOT, "deploy/systemd/tartan.service");
const BUN = process.execPath;

const tmp = mkdtempSync(join(tmpdir(), "tartan-deploy-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// biome-ignore lint/suspicious/noExplicitAny: parsed YAML is walked freely here; checkManifest validates its shape
type Doc = Record<string, any>;

async function sh(cmd: string[], env: Record<string, string> = {}) {
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } });
  const [out, err, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  return { out, err, code };
}

function which(bin: string): string | null {
  for (const dir of (process.env.PATH ?? "").split(":"))
    if (existsSync(join(dir, bin))) return join(dir, bin);
  return null;
}

/** The DaemonSet's environment as the kubelet would give it on node-1 (ConfigMap keys, downward API). */
function agentEnv(agent: Doc, configMap: Doc): Record<string, string> {
  const env: Record<string, string> = {};
  const fields: Record<string, string> = {
    "spec.nodeName": "node-1",
    "metadata.name": "tartan-x7k2p",
    "metadata.namespace": "tartan-system",
  };
  for (const e of agent.env) {
    if (e.value !== undefined) env[e.name] = e.value;
    else if (e.valueFrom.configMapKeyRef) env[e.name] = configMap.data[e.valueFrom.configMapKeyRef.key];
    else env[e.name] = fields[e.valueFrom.fieldRef.fieldPath]!;
  }
  return env;
}

const kubectl = which("kubectl");
if (!kubectl) console.log("cni-deploy.test.ts: kubectl is not installed; skipping the kubectl dry run");

for (const [file, mode] of [
  ["tartan.yaml", "kube"],
  ["tartan-etcd.yaml", "etcd"],
] as const)
  describe(`Kubernetes manifest ${file}`, () => {
    const MANIFEST = join(ROOT, "deploy/kubernetes", file);
    const docs = Bun.YAML.parse(readFileSync(MANIFEST, "utf8")) as Doc[];
    const byKind = (k: string) => docs.find((d) => d.kind === k)!;
    const configMap = byKind("ConfigMap");
    const ds = byKind("DaemonSet");
    const podSpec = ds.spec.template.spec;
    const agent = podSpec.containers.find((c: Doc) => c.name === "tartan");
    const init = podSpec.initContainers.find((c: Doc) => c.name === "install-cni");
    const configDir = agent.volumeMounts.find((m: Doc) => m.name === "tartan-config").mountPath as string;

    test("every object passes the offline schema and its cross-references hold", () => {
      expect(docs.map((d) => d.kind)).toEqual([
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "DaemonSet",
      ]);
      expect(checkManifest(docs)).toEqual([]);
    });

    test("the schema catches a misspelt field, a dangling volume and a wrong selector", () => {
      const broken = structuredClone(docs);
      const bds = broken.find((d) => d.kind === "DaemonSet")!;
      bds.spec.template.spec.containers[0].volumeMounts[0].mountpath = "/x";
      expect(checkManifest(broken).join("\n")).toContain("mountpath");
      const b2 = structuredClone(docs);
      const ds2 = b2.find((d) => d.kind === "DaemonSet")!;
      ds2.spec.template.spec.containers[0].volumeMounts.push({ name: "nope", mountPath: "/nope" });
      ds2.spec.selector.matchLabels["app.kubernetes.io/name"] = "other";
      const p2 = checkManifest(b2).join("\n");
      expect(p2).toContain("mounts volume nope, which is not defined");
      expect(p2).toContain("does not match the pod template's labels");
    });

    test("the ConfigMap's conflist is deploy/cni/10-tartan.conflist and the plugin accepts it", () => {
      const fromMap = JSON.parse(configMap.data["cni-conf.json"]);
      const fromFile = JSON.parse(readFileSync(CONFLIST, "utf8"));
      expect(fromMap).toEqual(fromFile);
      expect(fromFile.name).toBe("cbr0"); // flannel's network name: host-local state is shared across the switch
      expect(fromFile.plugins.map((p: Doc) => p.type)).toEqual(["tartan", "portmap"]);
      // libcni hands each plugin its entry plus the list's name and cniVersion
      const conf = parseNetConf(
        JSON.stringify({ ...fromFile.plugins[0], name: fromFile.name, cniVersion: fromFile.cniVersion }),
      );
      expect(conf.subnetFile).toBe("/run/flannel/subnet.env");
      expect(conf.dataDir).toBe("/var/lib/cni/flannel");
    });

    test("net-conf.json is a valid network config with flannel's vxlan wire format", () => {
      const cfg = parseNetworkConfig(configMap.data["net-conf.json"]);
      expect(cfg.backend.type).toBe("vxlan");
    });

    test("the agent's command line parses, and the probes hit its --http", () => {
      expect(agent.command).toEqual(["/usr/local/bin/tartan", "agent"]);
      const env = agentEnv(agent, configMap);
      const args: string[] = agent.args.map((a: string) =>
        a.replace(/\$\((\w+)\)/g, (_: string, n: string) => env[n]!),
      );
      const o = parseAgentOptions(args, env);
      if (mode === "etcd") {
        expect(o.registry.kind).toBe("etcd");
        expect(o.kube).toBeNull();
      } else {
        // flanneld's kube-flannel.yml command line: --ip-masq --kube-subnet-mgr, the API in-cluster
        expect(o.kube).toEqual({
          apiUrl: null,
          kubeconfigFile: null,
          annotationPrefix: "flannel.alpha.coreos.com",
          setNodeNetworkUnavailable: true,
        });
        expect(o.kubeNodeFromPod).toBeNull();
        expect(o.ipMasq).toBe(true);
        expect(o.backend).toBe("ebpf-vxlan");
      }
      expect(o.nodeName).toBe("node-1");
      expect(o.subnetFile).toBe("/run/flannel/subnet.env");
      expect(o.netConfigPath).toBe(`${configDir}/net-conf.json`);
      for (const [probe, path] of [
        ["livenessProbe", "/healthz"],
        ["readinessProbe", "/readyz"],
      ] as const) {
        expect(agent[probe].httpGet).toMatchObject({ host: o.http.host, port: o.http.port, path });
      }
      expect(podSpec.hostNetwork).toBe(true);
      expect(podSpec.priorityClassName).toBe("system-node-critical");
      // cluster DNS is not there before the pod network is
      expect(podSpec.dnsPolicy).toBe("Default");
      const mounts = new Map<string, Doc>(agent.volumeMounts.map((m: Doc) => [m.mountPath, m]));
      for (const p of ["/sys/fs/bpf", "/run/flannel", "/etc/cni/net.d", "/opt/cni/bin", "/var/lib/tartan"])
        expect(mounts.has(p)).toBe(true);
      expect(mounts.get("/sys/fs/bpf")!.mountPropagation).toBe("Bidirectional");
    });

    if (mode === "kube")
      test("kube-flannel.yml's shape: flannel's RBAC, the downward API, every taint tolerated, its config dir", () => {
        expect(byKind("ClusterRole").rules).toEqual([
          { apiGroups: [""], resources: ["pods"], verbs: ["get"] },
          { apiGroups: [""], resources: ["nodes"], verbs: ["get", "list", "watch"] },
          { apiGroups: [""], resources: ["nodes/status"], verbs: ["patch"] },
        ]);
        const env = agentEnv(agent, configMap);
        expect(env).toEqual({
          NODE_NAME: "node-1",
          POD_NAME: "tartan-x7k2p",
          POD_NAMESPACE: "tartan-system",
        });
        // no etcd anywhere
        expect(JSON.stringify(docs)).not.toMatch(/etcd/i);
        expect(podSpec.tolerations).toEqual([{ operator: "Exists" }]);
        expect(configDir).toBe("/etc/kube-flannel");
      });

    test("the init container installs the binary and the conflist, and moves flannel's conflist aside", async () => {
      const root = join(tmp, `node-${mode}`);
      const bin = join(root, "opt/cni/bin");
      const netd = join(root, "etc/cni/net.d");
      const cfg = join(root, configDir);
      for (const d of [bin, netd, cfg, join(root, "usr/local/bin")]) mkdirSync(d, { recursive: true });
      writeFileSync(join(root, "usr/local/bin/tartan"), "#!/bin/sh\necho fake tartan\n");
      writeFileSync(join(cfg, "cni-conf.json"), configMap.data["cni-conf.json"]);
      writeFileSync(join(netd, "10-flannel.conflist"), "{}");
      writeFileSync(join(netd, "99-loopback.conf"), "{}");
      const script = (init.args[0] as string).replace(
        /(\/usr\/local\/bin|\/opt\/cni\/bin|\/etc\/cni\/net\.d|\/etc\/tartan|\/etc\/kube-flannel)/g,
        (m) => join(root, m),
      );
      const r = await sh([init.command[0], init.command[1], script]);
      expect(r.err).toBe("");
      expect(r.code).toBe(0);
      expect(readdirSync(netd).sort()).toEqual([
        "10-flannel.conflist.replaced-by-tartan",
        "10-tartan.conflist",
        "99-loopback.conf",
      ]);
      expect(JSON.parse(readFileSync(join(netd, "10-tartan.conflist"), "utf8"))).toEqual(
        JSON.parse(readFileSync(CONFLIST, "utf8")),
      );
      expect(readFileSync(join(bin, "tartan"), "utf8")).toContain("fake tartan");
      // a second run (pod restart) is fine
      expect((await sh([init.command[0], init.command[1], script])).code).toBe(0);
      expect(readdirSync(bin)).toEqual(["tartan"]);
    });

    test.skipIf(!kubectl)(
      "kubectl apply --dry-run=client accepts it (stub API server for discovery only)",
      async () => {
        const server = stubApiServer();
        try {
          const r = await sh(
            [
              kubectl!,
              "apply",
              "--dry-run=client",
              "--validate=false",
              `--server=http://127.0.0.1:${server.port}`,
              `--cache-dir=${join(tmp, "kube-cache")}`,
              "-f",
              MANIFEST,
            ],
            { KUBECONFIG: "/dev/null", HOME: tmp },
          );
          expect(r.err).toBe("");
          expect(r.code).toBe(0);
          expect(r.out.trim().split("\n")).toEqual([
            "namespace/tartan-system created (dry run)",
            "serviceaccount/tartan created (dry run)",
            "clusterrole.rbac.authorization.k8s.io/tartan created (dry run)",
            "clusterrolebinding.rbac.authorization.k8s.io/tartan created (dry run)",
            "configmap/tartan-config created (dry run)",
            "daemonset.apps/tartan created (dry run)",
          ]);
          // and it does fail on a kind the API does not have
          const bad = join(tmp, `bad-${file}`);
          writeFileSync(bad, readFileSync(MANIFEST, "utf8").replace("kind: DaemonSet", "kind: DaemonSett"));
          const r2 = await sh(
            [
              kubectl!,
              "apply",
              "--dry-run=client",
              "--validate=false",
              `--server=http://127.0.0.1:${server.port}`,
              "-f",
              bad,
            ],
            { KUBECONFIG: "/dev/null", HOME: tmp },
          );
          expect(r2.code).not.toBe(0);
          expect(r2.err).toContain("DaemonSett");
        } finally {
          server.stop(true);
        }
      },
    );
  });

/** Answers kubectl's discovery for the kinds the manifest uses; every object GET is 404 (nothing exists yet). */
function stubApiServer() {
  const list = (gv: string, rs: [string, string, boolean][]) => ({
    kind: "APIResourceList",
    apiVersion: "v1",
    groupVersion: gv,
    resources: rs.map(([name, kind, namespaced]) => ({
      name,
      singularName: "",
      namespaced,
      kind,
      verbs: ["create", "delete", "get", "list", "patch", "update", "watch"],
    })),
  });
  const group = (name: string) => ({
    name,
    versions: [{ groupVersion: `${name}/v1`, version: "v1" }],
    preferredVersion: { groupVersion: `${name}/v1`, version: "v1" },
  });
  const routes: Record<string, unknown> = {
    "/api": { kind: "APIVersions", versions: ["v1"], serverAddressByClientCIDRs: [] },
    "/apis": {
      kind: "APIGroupList",
      apiVersion: "v1",
      groups: [group("apps"), group("rbac.authorization.k8s.io")],
    },
    "/api/v1": list("v1", [
      ["namespaces", "Namespace", false],
      ["serviceaccounts", "ServiceAccount", true],
      ["configmaps", "ConfigMap", true],
    ]),
    "/apis/apps/v1": list("apps/v1", [["daemonsets", "DaemonSet", true]]),
    "/apis/rbac.authorization.k8s.io/v1": list("rbac.authorization.k8s.io/v1", [
      ["clusterroles", "ClusterRole", false],
      ["clusterrolebindings", "ClusterRoleBinding", false],
    ]),
  };
  return Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const body = routes[new URL(req.url).pathname];
      if (body && req.method === "GET") return Response.json(body);
      return Response.json(
        { kind: "Status", apiVersion: "v1", status: "Failure", reason: "NotFound", code: 404 },
        { status: 404 },
      );
    },
  });
}

describe("systemd unit", () => {
  const unit = readFileSync(UNIT, "utf8");
  const line = (key: string) =>
    unit
      .split("\n")
      .find((l) => l.startsWith(`${key}=`))!
      .slice(key.length + 1);
  /** The unit's shell command with its paths moved into `dir` and the binary replaced by the sources. */
  const localize = (cmd: string, dir: string) =>
    cmd
      .replaceAll("/run/flannel/subnet.env", join(dir, "subnet.env"))
      .replaceAll("/run/docker_opts.env", join(dir, "docker_opts.env"))
      .replaceAll("/usr/local/bin/tartan", `${BUN} ${join(ROOT, "src/main.ts")}`);
  const shArg = (cmd: string) => /^\/bin\/sh -c '(.*)'$/.exec(cmd)![1]!;

  const analyze = which("systemd-analyze");
  if (!analyze)
    console.log("cni-deploy.test.ts: systemd-analyze is not installed; skipping systemd-analyze verify");
  test.skipIf(!analyze)("systemd-analyze verify passes (and fails on a broken copy)", async () => {
    const dir = join(tmp, "units");
    mkdirSync(dir, { recursive: true });
    // verify checks that ExecStart's binary exists: point it at an executable we have
    const exe = existsSync(join(ROOT, "dist/tartan")) ? join(ROOT, "dist/tartan") : BUN;
    writeFileSync(join(dir, "tartan.service"), unit.replaceAll("/usr/local/bin/tartan", exe));
    const ok = await sh([analyze!, "verify", join(dir, "tartan.service")]);
    expect(ok.err).toBe("");
    expect(ok.code).toBe(0);
    writeFileSync(
      join(dir, "broken.service"),
      unit.replaceAll("/usr/local/bin/tartan", exe).replace("ExecStart=", "ExecStrat="),
    );
    expect((await sh([analyze!, "verify", join(dir, "broken.service")])).code).not.toBe(0);
  });

  test("ExecStartPre: a safe default docker_opts.env without subnet.env, flannel's options with it", async () => {
    const dir = join(tmp, "run");
    mkdirSync(dir, { recursive: true });
    const pre = localize(shArg(line("ExecStartPre")), dir);
    const r1 = await sh(["/bin/sh", "-c", pre]);
    expect(r1.code).toBe(0);
    expect(readFileSync(join(dir, "docker_opts.env"), "utf8")).toBe("DOCKER_OPTS=\n");
    writeFileSync(
      join(dir, "subnet.env"),
      "FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
    );
    const r2 = await sh(["/bin/sh", "-c", pre], { DOCKER_OPTS: "" });
    expect(r2.err).toBe("");
    expect(r2.code).toBe(0);
    expect(readFileSync(join(dir, "docker_opts.env"), "utf8")).toBe(
      'DOCKER_OPT_BIP="--bip=198.19.3.1/24"\nDOCKER_OPT_IPMASQ="--ip-masq=true"\nDOCKER_OPT_MTU="--mtu=1450"\nDOCKER_OPTS=" --bip=198.19.3.1/24 --ip-masq=true --mtu=1450"\n',
    );
  });

  test("Type=notify: the agent says READY=1 itself; ExecStartPost (after READY, subnet.env written) writes the real options", async () => {
    expect(line("Type")).toBe("notify");
    expect(line("NotifyAccess")).toBe("main");
    expect(line("Before").split(" ")).toContain("docker.service");
    expect(line("ExecStart")).toStartWith("/usr/local/bin/tartan agent ");
    const dir = join(tmp, "run2");
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      join(dir, "subnet.env"),
      "FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.4.1/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=true\n",
    );
    const post = await sh(localize(line("ExecStartPost"), dir).split(" "), { DOCKER_OPTS: "" });
    expect(post.err).toBe("");
    expect(post.code).toBe(0);
    expect(readFileSync(join(dir, "docker_opts.env"), "utf8")).toContain(
      'DOCKER_OPT_BIP="--bip=198.19.4.1/24"',
    );
  });
});

test("the CNI env parser accepts what a runtime passes for the installed plugin", () => {
  // containerd runs /opt/cni/bin/tartan with these and CNI_ARGS
  const e = parseCniEnv({
    CNI_COMMAND: "ADD",
    CNI_CONTAINERID: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    CNI_NETNS: "/var/run/netns/cni-7e1b8f0e-1c1a-4d8e-9c7a-0d1c2b3a4f5e",
    CNI_IFNAME: "eth0",
    CNI_ARGS: "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;IgnoreUnknown=1",
    CNI_PATH: "/opt/cni/bin",
  });
  expect(e.args).toContain("K8S_POD_NAME=web-0");
});
