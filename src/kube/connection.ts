/**
 * Where the Kubernetes API is and how to authenticate, chosen as flanneld chooses
 * (client-go's BuildConfigFromFlags): neither --kube-api-url nor --kubeconfig-file → the
 * pod's service account (in-cluster: KUBERNETES_SERVICE_HOST/PORT and the token and CA
 * under /var/run/secrets/kubernetes.io/serviceaccount); a kubeconfig → its current
 * context, with --kube-api-url overriding the server; the URL alone → that server with
 * no credentials.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ValidationError } from "../validation.ts";
import { kubeconfigConnection } from "./kubeconfig.ts";

export type KubeAuth =
  | { readonly kind: "none" }
  | { readonly kind: "token"; readonly token: string }
  /** Re-read now and then: projected service-account tokens rotate. */
  | { readonly kind: "tokenFile"; readonly path: string }
  | { readonly kind: "basic"; readonly username: string; readonly password: string };

export interface KubeConnection {
  /** e.g. "https://10.96.0.1:443" */
  readonly server: string;
  /** PEM of the CA(s) to trust; null = the system's. */
  readonly ca: string | null;
  /** Client certificate and key (PEM), or null. */
  readonly cert: string | null;
  readonly key: string | null;
  readonly insecureSkipTlsVerify: boolean;
  readonly tlsServerName: string | null;
  readonly auth: KubeAuth;
  /** The namespace of the context or the service account, when known. */
  readonly namespace: string | null;
  /** For logs and status: where this came from (no secrets). */
  readonly source: string;
}

export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/** The pod's service-account connection (client-go's InClusterConfig). */
export function inClusterConnection(
  env: Readonly<Record<string, string | undefined>>,
  dir: string = SERVICE_ACCOUNT_DIR,
  read: (p: string) => string = (p) => readFileSync(p, "utf8"),
): KubeConnection {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port)
    throw new ValidationError(
      "no Kubernetes API to talk to: give --kube-api-url or --kubeconfig-file, or run in a pod (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set)",
    );
  const tokenPath = join(dir, "token");
  try {
    read(tokenPath);
  } catch (e) {
    throw new ValidationError(
      `in-cluster config: cannot read the service-account token ${tokenPath}: ${(e as Error).message}`,
    );
  }
  let ca: string | null = null;
  try {
    ca = read(join(dir, "ca.crt"));
  } catch {
    // as client-go: without the CA file the system's CAs are used
  }
  let namespace: string | null = null;
  try {
    namespace = read(join(dir, "namespace")).trim() || null;
  } catch {}
  const server = `https://${host.includes(":") ? `[${host}]` : host}:${port}`;
  return {
    server,
    ca,
    cert: null,
    key: null,
    insecureSkipTlsVerify: false,
    tlsServerName: null,
    auth: { kind: "tokenFile", path: tokenPath },
    namespace,
    source: `in-cluster service account (${server})`,
  };
}

export interface ConnectionFlags {
  /** --kube-api-url */
  readonly apiUrl?: string;
  /** --kubeconfig-file */
  readonly kubeconfigFile?: string;
}

/** The connection the flags select (see the module comment). */
export function resolveConnection(
  flags: ConnectionFlags,
  env: Readonly<Record<string, string | undefined>> = process.env,
  opts: { serviceAccountDir?: string; read?: (p: string) => string } = {},
): KubeConnection {
  if (flags.kubeconfigFile)
    return kubeconfigConnection(flags.kubeconfigFile, { server: flags.apiUrl, read: opts.read });
  if (flags.apiUrl) {
    let u: URL;
    try {
      u = new URL(flags.apiUrl);
    } catch {
      throw new ValidationError(`--kube-api-url=${flags.apiUrl}: not a URL like https://10.0.0.1:6443`);
    }
    if (u.protocol !== "https:" && u.protocol !== "http:")
      throw new ValidationError(`--kube-api-url=${flags.apiUrl}: must be an http:// or https:// URL`);
    return {
      server: flags.apiUrl,
      ca: null,
      cert: null,
      key: null,
      insecureSkipTlsVerify: false,
      tlsServerName: null,
      auth: { kind: "none" },
      namespace: null,
      source: `--kube-api-url=${flags.apiUrl}`,
    };
  }
  return inClusterConnection(env, opts.serviceAccountDir, opts.read);
}
