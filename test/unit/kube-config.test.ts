import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inClusterConnection, resolveConnection } from "../../src/kube/connection.ts";
import { kubeconfigConnection } from "../../src/kube/kubeconfig.ts";
import { ValidationError } from "../../src/validation.ts";

const dir = mkdtempSync(join(tmpdir(), "tartan-kubeconfig-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CA = "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n";
const CERT = "-----BEGIN CERTIFICATE-----\nCLIENT\n-----END CERTIFICATE-----\n";
const KEY = "-----BEGIN EC PRIVATE KEY-----\nKEY\n-----END EC PRIVATE KEY-----\n";
const b64 = (s: string) => Buffer.from(s).toString("base64");

function file(name: string, text: string): string {
  const p = join(dir, name);
  mkdirSync(join(p, ".."), { recursive: true });
  writeFileSync(p, text);
  return p;
}

// two contexts, inline data for one cluster, files (one relative) for the other
const kubeconfig = file(
  "cfg/kubeconfig",
  `apiVersion: v1
kind: Config
current-context: prod
clusters:
- name: prod-cluster
  cluster:
    server: https://198.18.254.2:6443
    certificate-authority-data: ${b64(CA)}
    tls-server-name: kubernetes.default.svc
- name: lab
  cluster:
    server: https://198.18.254.3:6443
    certificate-authority: pki/ca.pem
    insecure-skip-tls-verify: true
contexts:
- name: prod
  context: {cluster: prod-cluster, user: admin, namespace: kube-flannel}
- name: lab
  context: {cluster: lab, user: certs}
- name: basic
  context: {cluster: lab, user: basic}
- name: filetoken
  context: {cluster: lab, user: filetoken}
- name: plugin
  context: {cluster: lab, user: plugin}
- name: halfcert
  context: {cluster: lab, user: halfcert}
- name: ghost
  context: {cluster: nowhere}
users:
- name: admin
  user: {token: abc.def}
- name: certs
  user:
    client-certificate: ${join(dir, "cfg/pki/client.pem")}
    client-key-data: ${b64(KEY)}
- name: basic
  user: {username: alice, password: s3cret}
- name: filetoken
  user: {tokenFile: tokens/t}
- name: plugin
  user:
    exec: {command: gke-gcloud-auth-plugin, apiVersion: client.authentication.k8s.io/v1beta1}
- name: halfcert
  user: {client-certificate-data: ${b64(CERT)}}
`,
);
file("cfg/pki/ca.pem", CA);
file("cfg/pki/client.pem", CERT);

describe("kubeconfig", () => {
  test("the current context: server, inline CA, tls-server-name, token, namespace", () => {
    expect(kubeconfigConnection(kubeconfig)).toEqual({
      server: "https://198.18.254.2:6443",
      ca: CA,
      cert: null,
      key: null,
      insecureSkipTlsVerify: false,
      tlsServerName: "kubernetes.default.svc",
      auth: { kind: "token", token: "abc.def" },
      namespace: "kube-flannel",
      source: `kubeconfig ${kubeconfig} (context prod)`,
    });
  });

  test("a named context: CA file relative to the kubeconfig, client cert file + key data, insecure", () => {
    const c = kubeconfigConnection(kubeconfig, { context: "lab" });
    expect(c.ca).toBe(CA);
    expect(c.cert).toBe(CERT);
    expect(c.key).toBe(KEY);
    expect(c.insecureSkipTlsVerify).toBe(true);
    expect(c.auth).toEqual({ kind: "none" });
  });

  test("basic auth and a token file (relative path resolved)", () => {
    expect(kubeconfigConnection(kubeconfig, { context: "basic" }).auth).toEqual({
      kind: "basic",
      username: "alice",
      password: "s3cret",
    });
    expect(kubeconfigConnection(kubeconfig, { context: "filetoken" }).auth).toEqual({
      kind: "tokenFile",
      path: join(dir, "cfg/tokens/t"),
    });
  });

  test("--kube-api-url overrides the cluster's server", () => {
    expect(resolveConnection({ kubeconfigFile: kubeconfig, apiUrl: "https://198.18.254.9:443" }).server).toBe(
      "https://198.18.254.9:443",
    );
  });

  const bad: [string, () => unknown, string][] = [
    [
      "exec plugins",
      () => kubeconfigConnection(kubeconfig, { context: "plugin" }),
      "exec or auth-provider plugin",
    ],
    [
      "a certificate without its key",
      () => kubeconfigConnection(kubeconfig, { context: "halfcert" }),
      "needs both",
    ],
    [
      "an undefined cluster",
      () => kubeconfigConnection(kubeconfig, { context: "ghost" }),
      'cluster "nowhere" is not defined',
    ],
    [
      "an undefined context",
      () => kubeconfigConnection(kubeconfig, { context: "nope" }),
      'context "nope" is not defined',
    ],
    ["a missing file", () => kubeconfigConnection(join(dir, "none")), "cannot read it"],
    ["not YAML", () => kubeconfigConnection(file("bad.yaml", "clusters: [\n")), "not YAML"],
    [
      "wrong types",
      () => kubeconfigConnection(file("types.yaml", "clusters: 5\n")),
      "clusters must be a list",
    ],
    [
      "no current context",
      () => kubeconfigConnection(file("empty.yaml", "kind: Config\n")),
      "no current-context",
    ],
  ];
  for (const [what, fn, msg] of bad)
    test(`refuses ${what} in one line naming the file`, () => {
      let err: unknown;
      try {
        fn();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as Error).message).toContain("--kubeconfig-file=");
      expect((err as Error).message).toContain(msg);
      expect((err as Error).message).not.toContain("\n");
    });
});

describe("in-cluster and URL-only", () => {
  const sa = join(dir, "sa");
  mkdirSync(sa, { recursive: true });
  writeFileSync(join(sa, "token"), "sa-token\n");
  writeFileSync(join(sa, "ca.crt"), CA);
  writeFileSync(join(sa, "namespace"), "kube-flannel");

  test("neither flag: the pod's service account", () => {
    const c = resolveConnection(
      {},
      { KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "443" },
      { serviceAccountDir: sa },
    );
    expect(c).toMatchObject({
      server: "https://10.96.0.1:443",
      ca: CA,
      auth: { kind: "tokenFile", path: join(sa, "token") },
      namespace: "kube-flannel",
    });
  });

  test("an IPv6 service host is bracketed", () => {
    expect(
      inClusterConnection({ KUBERNETES_SERVICE_HOST: "fd00:96::1", KUBERNETES_SERVICE_PORT: "443" }, sa)
        .server,
    ).toBe("https://[fd00:96::1]:443");
  });

  test("outside a pod, with no flags, the error says what to give", () => {
    expect(() => resolveConnection({}, {}, { serviceAccountDir: sa })).toThrow(
      /give --kube-api-url or --kubeconfig-file, or run in a pod/,
    );
    expect(() =>
      inClusterConnection(
        { KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "443" },
        join(dir, "nosa"),
      ),
    ).toThrow(/cannot read the service-account token/);
  });

  test("--kube-api-url alone: that server, no credentials; a bad URL is refused", () => {
    expect(resolveConnection({ apiUrl: "http://198.18.254.2:8080" }, {})).toMatchObject({
      server: "http://198.18.254.2:8080",
      auth: { kind: "none" },
      ca: null,
    });
    expect(() => resolveConnection({ apiUrl: "198.18.254.2:8080" }, {})).toThrow(
      /--kube-api-url=198.18.254.2:8080/,
    );
    expect(() => resolveConnection({ apiUrl: "ftp://x" }, {})).toThrow(/http:\/\/ or https:\/\//);
  });
});
