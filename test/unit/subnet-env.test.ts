import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseCidr } from "../../src/config/cidr.ts";
import {
  formatDockerOpts,
  formatSubnetEnv,
  parseSubnetEnv,
  readSubnetEnv,
  writeSubnetEnv,
} from "../../src/config/subnet-env.ts";
import { main } from "../../src/main.ts";

const env = {
  network: parseCidr("10.244.0.0/16")!,
  subnet: parseCidr("10.244.3.0/24")!,
  mtu: 1450,
  ipMasq: true,
};
const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), "tartan-unit-"));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("subnet.env", () => {
  test("flanneld's exact format", () => {
    expect(formatSubnetEnv(env)).toBe(
      "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
    );
  });
  test("round-trips through the file, atomically replacing it", () => {
    const p = join(tmp(), "run/flannel/subnet.env");
    writeSubnetEnv(p, env);
    writeSubnetEnv(p, { ...env, mtu: 1400 });
    expect(readSubnetEnv(p)).toEqual({ kind: "ok", env: { ...env, mtu: 1400 } });
  });
  test("missing file is reported as missing", () => {
    expect(readSubnetEnv(join(tmp(), "nope.env")).kind).toBe("missing");
  });
  const corrupt: [string, string, RegExp][] = [
    [
      "no network",
      "FLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
      /FLANNEL_NETWORK is missing/,
    ],
    [
      "bad subnet",
      "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
      /FLANNEL_SUBNET=10.244.3\/24/,
    ],
    [
      "bad mtu",
      "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=big\nFLANNEL_IPMASQ=false\n",
      /FLANNEL_MTU=big/,
    ],
    [
      "bad masq",
      "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=yes\n",
      /FLANNEL_IPMASQ=yes/,
    ],
    ["binary junk", "\u0000\u0001garbage", /not KEY=VALUE/],
  ];
  for (const [name, text, re] of corrupt)
    test(`corrupt: ${name}`, () => {
      expect(() => parseSubnetEnv(text)).toThrow(re);
      const p = join(tmp(), "subnet.env");
      writeFileSync(p, text);
      const r = readSubnetEnv(p);
      expect(r.kind).toBe("invalid");
    });
});

describe("docker-opts (mk-docker-opts.sh)", () => {
  const flags = { individual: false, combined: false, combinedKey: "DOCKER_OPTS", noIpMasq: false };
  test("default writes both forms, sorted, with the leading space the script leaves", () => {
    expect(formatDockerOpts({ ...env, ipMasq: false }, flags)).toBe(
      'DOCKER_OPT_BIP="--bip=10.244.3.1/24"\nDOCKER_OPT_IPMASQ="--ip-masq=true"\nDOCKER_OPT_MTU="--mtu=1450"\nDOCKER_OPTS=" --bip=10.244.3.1/24 --ip-masq=true --mtu=1450"\n',
    );
  });
  test("-c -m -k: combined only, no ip-masq, custom key, existing value kept", () => {
    expect(
      formatDockerOpts(env, {
        ...flags,
        combined: true,
        noIpMasq: true,
        combinedKey: "OPTS",
        existing: "--debug",
      }),
    ).toBe('OPTS="--debug  --bip=10.244.3.1/24 --mtu=1450"\n');
  });
  test("-i: individual only; flannel masquerading turns Docker's off", () => {
    expect(formatDockerOpts(env, { ...flags, individual: true })).toBe(
      'DOCKER_OPT_BIP="--bip=10.244.3.1/24"\nDOCKER_OPT_IPMASQ="--ip-masq=false"\nDOCKER_OPT_MTU="--mtu=1450"\n',
    );
  });
  test("the command reads -f and writes -d", async () => {
    const d = tmp();
    writeFileSync(join(d, "subnet.env"), formatSubnetEnv(env));
    expect(await main(["docker-opts", "-f", join(d, "subnet.env"), "-d", join(d, "docker.env"), "-c"])).toBe(
      0,
    );
    expect(readFileSync(join(d, "docker.env"), "utf8")).toBe(
      'DOCKER_OPTS=" --bip=10.244.3.1/24 --ip-masq=false --mtu=1450"\n',
    );
  });
  test("the command refuses a missing or corrupt env file", async () => {
    const d = tmp();
    expect(await main(["docker-opts", "-f", join(d, "none.env"), "-d", join(d, "docker.env")])).toBe(2);
    writeFileSync(join(d, "bad.env"), "FLANNEL_NETWORK=x\n");
    expect(await main(["docker-opts", "-f", join(d, "bad.env"), "-d", join(d, "docker.env")])).toBe(2);
    expect(() => readFileSync(join(d, "docker.env"))).toThrow();
  });
});
