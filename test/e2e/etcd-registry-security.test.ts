/**
 * The etcd registry's connection security as flanneld's: TLS with a CA and a client
 * certificate (`--etcd-cafile/--etcd-certfile/--etcd-keyfile`), and etcd's
 * username/password auth (`--etcd-username/--etcd-password`), on real etcds.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { DEFAULT_ETCD_PREFIX } from "../../src/config/options.ts";
import { silentLogger } from "../../src/log.ts";
import { createEtcdRegistry } from "../../src/registry/etcd.ts";
import type { Registry, WatchEvent } from "../../src/registry/registry.ts";
import { RegistryError } from "../../src/registry/registry.ts";
import { makeTestPki, type TestPki } from "../helpers/certs.ts";
import { startEtcd, type TestEtcd } from "../helpers/etcd.ts";

const P = DEFAULT_ETCD_PREFIX;
const VALUE =
  '{"PublicIP":"198.18.0.1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:58:c6:13:01:00"}}';

async function waitFor(what: string, cond: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(25);
  }
}

/** Create, list and watch work: the registry is usable end to end. */
async function exercise(reg: Registry, key: string): Promise<void> {
  const { revision } = await reg.list();
  const seen: WatchEvent[] = [];
  const w = reg.watch(revision, { onEvents: (evs) => seen.push(...evs) });
  try {
    expect(await reg.create(key, VALUE, 60_000)).not.toBeNull();
    expect((await reg.list()).records.map((r) => r.key)).toContain(key);
    await waitFor("the watch event", () => seen.some((e) => e.type === "put" && e.record.key === key));
  } finally {
    w.stop();
  }
}

describe("etcd over TLS with client certificates", () => {
  let pki: TestPki;
  let etcd: TestEtcd;

  beforeAll(async () => {
    pki = await makeTestPki();
    etcd = await startEtcd({
      tls: {
        caFile: pki.caFile,
        certFile: pki.serverCertFile,
        keyFile: pki.serverKeyFile,
        client: { certFile: pki.clientCertFile, keyFile: pki.clientKeyFile },
      },
    });
  }, 60_000);

  afterAll(async () => {
    await etcd?.close();
    pki?.remove();
  });

  test("connects with the CA, certificate and key files", async () => {
    expect(etcd.endpoint.startsWith("https://")).toBe(true);
    const reg = await createEtcdRegistry({
      endpoints: [etcd.endpoint],
      prefix: P,
      caFile: pki.caFile,
      certFile: pki.clientCertFile,
      keyFile: pki.clientKeyFile,
      log: silentLogger,
    });
    try {
      await exercise(reg, "198.19.1.0-24");
      expect((await etcd.etcdctl(["get", "--print-value-only", `${P}/subnets/198.19.1.0-24`])).trim()).toBe(
        VALUE,
      );
    } finally {
      await reg.close();
    }
  });

  test("without a client certificate etcd refuses, and the error names the endpoint and operation", async () => {
    const reg = await createEtcdRegistry({
      endpoints: [etcd.endpoint],
      prefix: P,
      caFile: pki.caFile,
      log: silentLogger,
      requestTimeoutMs: 3000,
    });
    try {
      const err = await reg.getConfig().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RegistryError);
      expect((err as Error).message).toContain(etcd.endpoint);
      expect((err as Error).message).toContain("read the network config");
    } finally {
      await reg.close();
    }
  });

  test("a missing key file is reported by name before any connection", async () => {
    const err = await createEtcdRegistry({
      endpoints: [etcd.endpoint],
      prefix: P,
      caFile: pki.caFile,
      certFile: pki.clientCertFile,
      keyFile: `${pki.dir}/nonexistent.key`,
      log: silentLogger,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as Error).message).toContain("nonexistent.key");
  });
});

describe("etcd with username/password auth", () => {
  let etcd: TestEtcd;
  const root = ["--user", "root:r00t-pw"];

  beforeAll(async () => {
    etcd = await startEtcd();
    await etcd.etcdctl(["user", "add", "root:r00t-pw", "--interactive=false"]);
    await etcd.etcdctl(["role", "add", "flannel"]);
    await etcd.etcdctl(["role", "grant-permission", "flannel", "--prefix=true", "readwrite", `${P}/`]);
    await etcd.etcdctl(["user", "add", "flannel:fl4nnel-pw", "--interactive=false"]);
    await etcd.etcdctl(["user", "grant-role", "flannel", "flannel"]);
    await etcd.etcdctl(["auth", "enable"]);
  }, 60_000);

  afterAll(async () => {
    await etcd?.close();
  });

  test("a user with a role on the prefix can create, list and watch; no secret in the description", async () => {
    const reg = await createEtcdRegistry({
      endpoints: [etcd.endpoint],
      prefix: P,
      username: "flannel",
      password: "fl4nnel-pw",
      log: silentLogger,
    });
    try {
      expect(reg.description).toBe(`etcd:${etcd.endpoint}`);
      expect(reg.description).not.toContain("fl4nnel-pw");
      await exercise(reg, "198.19.2.0-24");
      const stored = await etcd.etcdctl(["get", "--print-value-only", `${P}/subnets/198.19.2.0-24`], {
        flags: root,
      });
      expect(stored.trim()).toBe(VALUE);
    } finally {
      await reg.close();
    }
  });

  test("a wrong password fails with a RegistryError that does not contain it", async () => {
    const reg = await createEtcdRegistry({
      endpoints: [etcd.endpoint],
      prefix: P,
      username: "flannel",
      password: "wrong-pw",
      log: silentLogger,
    });
    try {
      const err = await reg.list().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RegistryError);
      expect((err as Error).message).toContain(etcd.endpoint);
      expect((err as Error).message).not.toContain("wrong-pw");
    } finally {
      await reg.close();
    }
  });

  test("without credentials etcd refuses", async () => {
    const reg = await createEtcdRegistry({ endpoints: [etcd.endpoint], prefix: P, log: silentLogger });
    try {
      expect(await reg.getConfig().catch((e: unknown) => e)).toBeInstanceOf(RegistryError);
    } finally {
      await reg.close();
    }
  });
});
