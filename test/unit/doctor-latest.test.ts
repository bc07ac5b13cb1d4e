import { describe, expect, test } from "bun:test";
import { LatestDoctor } from "../../src/doctor/latest.ts";
import type { DoctorReport } from "../../src/doctor/report.ts";
import { until } from "../helpers/netns.ts";

const report = (n: number): DoctorReport => ({
  node: `run${n}`,
  backend: "vxlan",
  kernel: "6.18",
  at: "now",
  settings: {},
  checks: [],
  probes: null,
  summary: { ok: 0, warning: 0, problem: 0 },
  exitCode: 0,
});

describe("latest doctor result (GET /v1/doctor)", () => {
  test("the first request waits for the first run; later ones get the kept report", async () => {
    let runs = 0;
    const d = new LatestDoctor(async () => report(++runs));
    expect((await d.latest()).node).toBe("run1");
    expect((await d.latest()).node).toBe("run1");
    expect(runs).toBe(1);
    expect((await d.refresh()).node).toBe("run2");
    expect((await d.latest()).node).toBe("run2");
  });

  test("concurrent refreshes share one run", async () => {
    let runs = 0;
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const d = new LatestDoctor(async () => {
      runs++;
      await gate;
      return report(runs);
    });
    const a = d.refresh();
    const b = d.latest();
    release();
    expect((await a).node).toBe("run1");
    expect((await b).node).toBe("run1");
    expect(runs).toBe(1);
  });

  test("a failed run is reported and does not replace the last good report", async () => {
    let fail = false;
    const d = new LatestDoctor(async () => {
      if (fail) throw new Error("ip: not found");
      return report(1);
    });
    await d.latest();
    fail = true;
    await expect(d.refresh()).rejects.toThrow("ip: not found");
    expect(d.lastError).toBe("ip: not found");
    expect((await d.latest()).node).toBe("run1");
  });

  test("runs at start, then again after the wait it is given after each run; stop ends it", async () => {
    let runs = 0;
    const waits: number[] = [];
    const d = new LatestDoctor(
      async () => report(++runs),
      () => {
        waits.push(runs);
        return 5;
      },
    );
    d.start();
    await until(() => runs >= 3, "three runs");
    d.stop();
    const after = runs;
    // the wait is asked once a run has ended, with what that run left behind
    expect(waits.slice(0, 3)).toEqual([1, 2, 3]);
    await Bun.sleep(30);
    expect(runs).toBeLessThanOrEqual(after + 1);
  });
});
