/**
 * A link's state from ioctls (the watchdog's health check of the kernel backends): the
 * loopback link of this namespace as `ip` shows it, and a link that does not exist.
 */
import { describe, expect, test } from "bun:test";
import { getLink } from "../../src/net/ip.ts";
import { linkState } from "../../src/net/link-state.ts";

describe("link state without ip", () => {
  test("lo: up, and the MAC ip shows", async () => {
    const viaIp = await getLink("lo");
    expect(linkState("lo")).toEqual({ up: viaIp!.flags.includes("UP"), mac: viaIp!.address! });
  });
  test("a link that is not there is null; so is a name too long to be one", () => {
    expect(linkState("tartan-none0")).toBeNull();
    expect(linkState("a-name-longer-than-ifnamsiz")).toBeNull();
  });
});
