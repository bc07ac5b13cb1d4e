/**
 * etcd connection security as flanneld takes it: `--etcd-cafile`, `--etcd-certfile`,
 * `--etcd-keyfile` (PEM files) and `--etcd-username`/`--etcd-password`. Reads the files
 * once, at start, and turns them into the etcd3 client's credentials; also the
 * endpoint text that is safe to show (no user info, no password).
 *
 * Bun workaround: grpc-js passes the endpoint's host to `tls.connect` as `servername`
 * (SNI). For an IP endpoint (`https://10.0.0.1:2379`, the usual etcd form) Node ignores
 * it, as RFC 6066 forbids IP addresses in SNI, but Bun 1.4 throws "Setting the TLS
 * ServerName to an IP address is not permitted", so no TLS connection to an IP could
 * ever be made. `ignoreIpServerNames()` makes Bun behave as Node: it drops an IP
 * `servername`; the certificate is still verified against the IP (`host`).
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import tls from "node:tls";
import type { IOptions } from "etcd3";
import { RegistryError } from "./registry.ts";

export interface EtcdSecurityOptions {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  username?: string;
  password?: string;
}

function readPem(what: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (cause) {
    throw new RegistryError(`etcd: cannot read the ${what} file ${file}`, { cause });
  }
}

/** The TLS and auth parts of the etcd3 client options; throws RegistryError naming the file or flag. */
export function etcdSecurity(opts: EtcdSecurityOptions): Pick<IOptions, "credentials" | "auth"> {
  const out: Pick<IOptions, "credentials" | "auth"> = {};
  if (Boolean(opts.certFile) !== Boolean(opts.keyFile))
    throw new RegistryError("etcd: --etcd-certfile and --etcd-keyfile must be given together");
  if (opts.caFile || opts.certFile) {
    // etcd3's type says Buffer, but grpc-js createSsl takes null for "the system's roots"
    const rootCertificate = (opts.caFile ? readPem("CA", opts.caFile) : null) as Buffer;
    out.credentials = { rootCertificate };
    if (opts.certFile && opts.keyFile) {
      out.credentials.certChain = readPem("certificate", opts.certFile);
      out.credentials.privateKey = readPem("key", opts.keyFile);
    }
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

let ipServerNamesIgnored = false;

/** Makes `tls.connect` ignore an IP `servername` as Node does (see the module comment). Idempotent. */
export function ignoreIpServerNames(): void {
  if (ipServerNamesIgnored || !process.versions.bun) return;
  ipServerNamesIgnored = true;
  const connect = tls.connect;
  const patched = (...args: unknown[]) => {
    const fixed = args.map((a) => {
      if (typeof a !== "object" || a === null || !("servername" in a)) return a;
      const { servername, ...rest } = a as { servername?: unknown };
      return typeof servername === "string" && isIP(servername) !== 0 ? rest : a;
    });
    return (connect as (...a: unknown[]) => tls.TLSSocket)(...fixed);
  };
  // grpc-js reaches tls.connect through require("tls"): the same object as this default export
  (tls as { connect: unknown }).connect = patched;
}
