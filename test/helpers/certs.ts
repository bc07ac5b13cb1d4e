/**
 * A throwaway PKI for TLS tests, made with openssl: a CA, a server certificate for
 * 127.0.0.1/localhost and a client certificate, as PEM files in a temp dir.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TestPki {
  readonly dir: string;
  readonly caFile: string;
  readonly serverCertFile: string;
  readonly serverKeyFile: string;
  readonly clientCertFile: string;
  readonly clientKeyFile: string;
  /** Removes the files. */
  remove(): void;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  const p = Bun.spawn(["openssl", ...args], { cwd, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [err, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`openssl ${args[0]} exited ${code}: ${err.trim()}`);
}

export async function makeTestPki(serverIp = "127.0.0.1"): Promise<TestPki> {
  const dir = mkdtempSync(join(tmpdir(), "tartan-pki-"));
  try {
    const key = (name: string) =>
      openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", name], dir);
    await key("ca.key");
    await openssl(
      [
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-subj",
        "/CN=tartan-test-ca",
        "-days",
        "2",
        "-out",
        "ca.pem",
      ],
      dir,
    );
    const leaf = async (name: string, cn: string, ext: string) => {
      await key(`${name}.key`);
      await openssl(["req", "-new", "-key", `${name}.key`, "-subj", `/CN=${cn}`, "-out", `${name}.csr`], dir);
      await Bun.write(join(dir, `${name}.ext`), ext);
      await openssl(
        [
          "x509",
          "-req",
          "-in",
          `${name}.csr`,
          "-CA",
          "ca.pem",
          "-CAkey",
          "ca.key",
          "-CAcreateserial",
          "-days",
          "2",
        ].concat(["-extfile", `${name}.ext`, "-out", `${name}.pem`]),
        dir,
      );
    };
    await leaf(
      "server",
      "etcd",
      `subjectAltName=IP:${serverIp},DNS:localhost\nextendedKeyUsage=serverAuth\n`,
    );
    await leaf("client", "tartan", "extendedKeyUsage=clientAuth\n");
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const remove = () => rmSync(dir, { recursive: true, force: true });
  return {
    dir,
    caFile: join(dir, "ca.pem"),
    serverCertFile: join(dir, "server.pem"),
    serverKeyFile: join(dir, "server.key"),
    clientCertFile: join(dir, "client.pem"),
    clientKeyFile: join(dir, "client.key"),
    remove,
  };
}
