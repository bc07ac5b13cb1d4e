/**
 * kubeconfig files: the YAML (or JSON) that kubectl reads, validated once, and the
 * connection its current context (or a named one) describes — server, CA (inline data or
 * a file, relative paths against the kubeconfig's directory, as client-go resolves them),
 * client certificate and key, bearer token or token file, basic auth,
 * insecure-skip-tls-verify and tls-server-name. exec and auth-provider plugins are not
 * supported and say so.
 */
import { readFileSync } from "node:fs";
import { dirname, isAbsolute, join } from "node:path";
import * as v from "valibot";
import { issuesText, ValidationError } from "../validation.ts";
import type { KubeAuth, KubeConnection } from "./connection.ts";

const str = (what: string) => v.optional(v.string(`${what} must be a string`));
const ClusterSchema = v.looseObject({
  server: str("cluster.server"),
  "certificate-authority": str("cluster.certificate-authority"),
  "certificate-authority-data": str("cluster.certificate-authority-data"),
  "insecure-skip-tls-verify": v.optional(v.boolean("cluster.insecure-skip-tls-verify must be true or false")),
  "tls-server-name": str("cluster.tls-server-name"),
});

const UserSchema = v.looseObject({
  token: str("user.token"),
  tokenFile: str("user.tokenFile"),
  "client-certificate": str("user.client-certificate"),
  "client-certificate-data": str("user.client-certificate-data"),
  "client-key": str("user.client-key"),
  "client-key-data": str("user.client-key-data"),
  username: str("user.username"),
  password: str("user.password"),
  exec: v.optional(v.unknown()),
  "auth-provider": v.optional(v.unknown()),
});

const ContextSchema = v.looseObject({
  cluster: v.string("context.cluster must be a string"),
  user: str("context.user"),
  namespace: str("context.namespace"),
});

/** A kubeconfig list: `[{name, <field>: {...}}]`. */
const entries = <E extends v.ObjectEntries>(what: string, entry: E) =>
  v.optional(
    v.nullable(
      v.array(
        v.looseObject({ name: v.string(`${what}[].name must be a string`), ...entry }),
        `${what} must be a list`,
      ),
    ),
  );

const KubeconfigSchema = v.looseObject({
  "current-context": str("current-context"),
  clusters: entries("clusters", { cluster: v.optional(v.nullable(ClusterSchema)) }),
  users: entries("users", { user: v.optional(v.nullable(UserSchema)) }),
  contexts: entries("contexts", { context: v.optional(v.nullable(ContextSchema)) }),
});

export type Kubeconfig = v.InferOutput<typeof KubeconfigSchema>;

/** Reads `path` (file access goes through `read`, for tests). */
export function loadKubeconfig(
  path: string,
  read: (p: string) => string = (p) => readFileSync(p, "utf8"),
): { config: Kubeconfig; dir: string } {
  let text: string;
  try {
    text = read(path);
  } catch (e) {
    throw new ValidationError(`--kubeconfig-file=${path}: cannot read it: ${(e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = Bun.YAML.parse(text);
  } catch (e) {
    throw new ValidationError(`--kubeconfig-file=${path}: not YAML: ${(e as Error).message}`);
  }
  const r = v.safeParse(KubeconfigSchema, doc ?? {});
  if (!r.success) throw new ValidationError(`--kubeconfig-file=${path}: ${issuesText(r.issues)}`);
  return { config: r.output, dir: dirname(path) };
}

function pick<T extends { name: string }>(
  list: readonly T[] | null | undefined,
  name: string,
): T | undefined {
  return (list ?? []).find((e) => e.name === name);
}

/** PEM from base64 `*-data` or from a file; null when neither is given. */
function pem(
  data: string | undefined,
  file: string | undefined,
  dir: string,
  what: string,
  read: (p: string) => string,
): string | null {
  if (data) return Buffer.from(data, "base64").toString("utf8");
  if (!file) return null;
  const p = isAbsolute(file) ? file : join(dir, file);
  try {
    return read(p);
  } catch (e) {
    throw new ValidationError(`${what} ${p}: cannot read it: ${(e as Error).message}`);
  }
}

/**
 * The connection of the kubeconfig's current context (or `context`); `server`, when
 * given (--kube-api-url), overrides the cluster's, as client-go's BuildConfigFromFlags.
 */
export function kubeconfigConnection(
  path: string,
  opts: { server?: string; context?: string; read?: (p: string) => string } = {},
): KubeConnection {
  const read = opts.read ?? ((p: string) => readFileSync(p, "utf8"));
  const { config, dir } = loadKubeconfig(path, read);
  const where = `--kubeconfig-file=${path}`;
  const ctxName = opts.context ?? config["current-context"];
  if (!ctxName) throw new ValidationError(`${where}: no current-context is set`);
  const ctx = pick(config.contexts, ctxName)?.context;
  if (!ctx) throw new ValidationError(`${where}: context ${JSON.stringify(ctxName)} is not defined`);
  const cluster = pick(config.clusters, ctx.cluster)?.cluster;
  if (!cluster) throw new ValidationError(`${where}: cluster ${JSON.stringify(ctx.cluster)} is not defined`);
  const user = ctx.user ? (pick(config.users, ctx.user)?.user ?? null) : null;
  if (ctx.user && !user)
    throw new ValidationError(`${where}: user ${JSON.stringify(ctx.user)} is not defined`);
  if (user?.exec !== undefined || user?.["auth-provider"] !== undefined)
    throw new ValidationError(
      `${where}: user ${JSON.stringify(ctx.user)} uses an exec or auth-provider plugin, which Tartan does not run; use a token, token file or client certificate`,
    );
  const server = opts.server || cluster.server;
  if (!server) throw new ValidationError(`${where}: cluster ${JSON.stringify(ctx.cluster)} has no server`);
  const u = user ?? {};
  const cert = pem(
    u["client-certificate-data"],
    u["client-certificate"],
    dir,
    `${where}: client-certificate`,
    read,
  );
  const key = pem(u["client-key-data"], u["client-key"], dir, `${where}: client-key`, read);
  if (!cert !== !key)
    throw new ValidationError(
      `${where}: user ${JSON.stringify(ctx.user)} needs both a client certificate and its key`,
    );
  let auth: KubeAuth = { kind: "none" };
  if (u.token) auth = { kind: "token", token: u.token };
  else if (u.tokenFile)
    auth = { kind: "tokenFile", path: isAbsolute(u.tokenFile) ? u.tokenFile : join(dir, u.tokenFile) };
  else if (u.username && u.password !== undefined)
    auth = { kind: "basic", username: u.username, password: u.password };
  return {
    server,
    ca: pem(
      cluster["certificate-authority-data"],
      cluster["certificate-authority"],
      dir,
      `${where}: certificate-authority`,
      read,
    ),
    cert,
    key,
    insecureSkipTlsVerify: cluster["insecure-skip-tls-verify"] ?? false,
    tlsServerName: cluster["tls-server-name"] ?? null,
    auth,
    namespace: ctx.namespace ?? null,
    source: `kubeconfig ${path} (context ${ctxName})`,
  };
}
