/**
 * etcd connection security as flanneld takes it: `--etcd-cafile`, `--etcd-certfile`,
 * `--etcd-keyfile` (PEM files) and `--etcd-username`/`--etcd-password`. Reads the files
 * once, at start, and turns them into the gateway client's TLS options and credentials;
 * also the endpoint text that is safe to show (no user info, no password).
 */
import { readFileSync } from "node:fs";
import type { GatewayTls } from "./etcd-gateway.ts";
import { RegistryError } from "./registry.ts";

export interface EtcdSecurityOptions {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  username?: string;
  password?: string;
}

function readPem(what: string, file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (cause) {
    throw new RegistryError(`etcd: cannot read the ${what} file ${file}`, { cause });
  }
}

export interface EtcdSecurity {
  tls?: GatewayTls;
  auth?: { username: string; password: string };
}

/** TLS files and credentials for the gateway client; throws RegistryError naming the file or flag. */
export function etcdSecurity(opts: EtcdSecurityOptions): EtcdSecurity {
  const out: EtcdSecurity = {};
  if (Boolean(opts.certFile) !== Boolean(opts.keyFile))
    throw new RegistryError("etcd: --etcd-certfile and --etcd-keyfile must be given together");
  if (opts.caFile || opts.certFile) {
    // no CA file: the system's roots verify etcd's certificate
    const tls: { ca?: string; cert?: string; key?: string } = {};
    if (opts.caFile) tls.ca = readPem("CA", opts.caFile);
    if (opts.certFile && opts.keyFile) {
      tls.cert = readPem("certificate", opts.certFile);
      tls.key = readPem("key", opts.keyFile);
    }
    out.tls = tls;
  }
  if (opts.username || opts.password) {
    if (!opts.username) throw new RegistryError("etcd: a password was given without a username");
    out.auth = { username: opts.username, password: opts.password ?? "" };
  }
  return out;
}

/** An endpoint as it may be logged: without any `user:password@`. */
export function redactEndpoint(endpoint: string): string {
  return endpoint.replace(/^([a-z][a-z0-9+.-]*:\/\/)?[^@/]*@/i, "$1");
}
