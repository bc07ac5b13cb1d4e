/**
 * A real headless Chromium (Debian's chromium-headless-shell, else chromium) inside a
 * node's network namespace, driven over the DevTools protocol: open a page, evaluate
 * in it, wait for a DOM condition, take a screenshot. cdp-relay.ts runs next to the
 * browser in the namespace and carries the protocol over stdio; nothing here touches the
 * root namespace's network. Its profile lives in the lab's directory.
 */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import type { Lab } from "./netns.ts";

const CANDIDATES = ["/usr/bin/chromium-headless-shell", "/usr/bin/chromium"];

export function findChromium(): string {
  const found = CANDIDATES.find((p) => existsSync(p));
  if (!found)
    throw new Error(
      `no headless Chromium: install Debian's chromium-headless-shell (scripts/setup does); looked for ${CANDIDATES.join(", ")}`,
    );
  return found;
}

interface Pending {
  resolve(v: Record<string, unknown>): void;
  reject(e: Error): void;
  method: string;
}

export class Browser {
  #nextId = 1;
  readonly #pending = new Map<number, Pending>();
  #stderr = "";

  private constructor(private readonly proc: Subprocess<"pipe", "pipe", "pipe">) {}

  /** Starts Chromium in namespace `ns`; close() ends it. */
  static async launch(lab: Lab, ns: string): Promise<Browser> {
    const profile = join(lab.dir, `chromium-${ns}-${Date.now()}`);
    mkdirSync(profile, { recursive: true });
    const proc = Bun.spawn(
      [
        "setpriv",
        "--pdeathsig",
        "SIGKILL",
        ...lab.nsCmd(ns, [process.execPath, join(import.meta.dir, "cdp-relay.ts"), findChromium(), profile]),
      ],
      { stdin: "pipe", stdout: "pipe", stderr: "pipe" },
    );
    const b = new Browser(proc);
    await b.#start();
    return b;
  }

  async #start(): Promise<void> {
    let ready: () => void = () => {};
    let failed: (e: Error) => void = () => {};
    const isReady = new Promise<void>((res, rej) => {
      ready = res;
      failed = rej;
    });
    void (async () => {
      const dec = new TextDecoder();
      for await (const chunk of this.proc.stderr)
        this.#stderr = (this.#stderr + dec.decode(chunk)).slice(-4000);
    })();
    void (async () => {
      const dec = new TextDecoder();
      let buf = "";
      for await (const chunk of this.proc.stdout) {
        buf += dec.decode(chunk, { stream: true });
        for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
          const msg = JSON.parse(buf.slice(0, nl)) as {
            relay?: string;
            id?: number;
            result?: Record<string, unknown>;
            error?: { message: string };
          };
          buf = buf.slice(nl + 1);
          if (msg.relay === "ready") ready();
          const p = msg.id === undefined ? undefined : this.#pending.get(msg.id);
          if (!p) continue;
          this.#pending.delete(msg.id!);
          if (msg.error) p.reject(new Error(`${p.method}: ${msg.error.message}`));
          else p.resolve(msg.result ?? {});
        }
      }
      const gone = new Error(`the browser relay exited: ${this.#stderr.trim()}`);
      failed(gone);
      for (const p of this.#pending.values()) p.reject(gone);
      this.#pending.clear();
    })();
    const timer = setTimeout(
      () => failed(new Error(`chromium did not start in 30 s: ${this.#stderr}`)),
      30_000,
    );
    try {
      await isReady;
    } finally {
      clearTimeout(timer);
    }
  }

  /** One DevTools command (on a page's session when `session` is given). */
  send(
    method: string,
    params: Record<string, unknown> = {},
    session?: string,
  ): Promise<Record<string, unknown>> {
    const id = this.#nextId++;
    const msg = { id, method, params, ...(session ? { sessionId: session } : {}) };
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, method });
      this.proc.stdin.write(`${JSON.stringify(msg)}\n`);
      this.proc.stdin.flush();
    });
  }

  /** A new tab of `width`×`height`; with `javascript: false` its scripts never run. */
  async newPage(o: { width?: number; height?: number; javascript?: boolean } = {}): Promise<Page> {
    const { targetId } = (await this.send("Target.createTarget", { url: "about:blank" })) as {
      targetId: string;
    };
    const { sessionId } = (await this.send("Target.attachToTarget", { targetId, flatten: true })) as {
      sessionId: string;
    };
    const page = new Page(this, sessionId);
    await page.send("Page.enable");
    await page.send("Emulation.setDeviceMetricsOverride", {
      width: o.width ?? 1400,
      height: o.height ?? 1000,
      deviceScaleFactor: 1,
      mobile: false,
    });
    if (o.javascript === false) await page.send("Emulation.setScriptExecutionDisabled", { value: true });
    return page;
  }

  async close(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.stdin.end();
    const t = setTimeout(() => this.proc.kill("SIGKILL"), 5000);
    await this.proc.exited;
    clearTimeout(t);
  }
}

export class Page {
  constructor(
    private readonly browser: Browser,
    readonly session: string,
  ) {}

  send(method: string, params: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    return this.browser.send(method, params, this.session);
  }

  /** Navigates and waits for the load event's result: document.readyState "complete". */
  async goto(url: string, ms = 15_000): Promise<void> {
    const r = (await this.send("Page.navigate", { url })) as { errorText?: string };
    if (r.errorText) throw new Error(`navigate to ${url}: ${r.errorText}`);
    const end = Date.now() + ms;
    while ((await this.evaluate<string>("document.readyState")) !== "complete") {
      if (Date.now() > end) throw new Error(`${url} did not finish loading in ${ms} ms`);
      await Bun.sleep(50);
    }
  }

  /** The value of a JavaScript expression in the page (DevTools evaluates even with page scripts off). */
  async evaluate<T>(expression: string): Promise<T> {
    const r = (await this.send("Runtime.evaluate", {
      expression,
      returnByValue: true,
      awaitPromise: true,
    })) as {
      result: { value?: T };
      exceptionDetails?: { text: string; exception?: { description?: string } };
    };
    if (r.exceptionDetails)
      throw new Error(
        `${expression}: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`,
      );
    return r.result.value as T;
  }

  /** A PNG of the whole page (the viewport grown to the document's height) written to `path`. */
  async screenshot(path: string, width = 1400): Promise<void> {
    const height = await this.evaluate<number>("document.documentElement.scrollHeight");
    await this.send("Emulation.setDeviceMetricsOverride", {
      width,
      height,
      deviceScaleFactor: 1,
      mobile: false,
    });
    const { data } = (await this.send("Page.captureScreenshot", { format: "png" })) as { data: string };
    writeFileSync(path, Buffer.from(data, "base64"));
  }
}
