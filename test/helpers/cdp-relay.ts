/**
 * Runs inside a node's network namespace (started by browser.ts through nsenter): starts
 * a headless Chromium there, connects to its DevTools WebSocket on that namespace's
 * loopback, and relays the DevTools protocol over stdio, one JSON message per line, so
 * a test in the root namespace can drive a browser that reaches the agent's endpoint.
 * Stdin closing ends Chromium (by its PID) and the relay.
 *
 * argv: CHROMIUM USER_DATA_DIR
 */
const [chromium, userDataDir] = process.argv.slice(2);
if (!chromium || !userDataDir) {
  console.error("usage: cdp-relay.ts CHROMIUM USER_DATA_DIR");
  process.exit(2);
}

// Headless, no sandbox (root in a test), and nothing that talks to the network by itself.
const browser = Bun.spawn(
  [
    "setpriv",
    "--pdeathsig",
    "SIGKILL",
    chromium,
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--metrics-recording-only",
    "--hide-scrollbars",
    "--mute-audio",
    `--user-data-dir=${userDataDir}`,
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    "about:blank",
  ],
  { stdin: "ignore", stdout: "ignore", stderr: "pipe" },
);

const end = (code: number) => {
  browser.kill("SIGKILL");
  process.exit(code);
};

// Chromium prints "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID" on stderr.
async function devtoolsUrl(): Promise<string> {
  const decoder = new TextDecoder();
  let seen = "";
  for await (const chunk of browser.stderr) {
    seen += decoder.decode(chunk, { stream: true });
    const m = /DevTools listening on (ws:\/\/\S+)/.exec(seen);
    if (m) return m[1]!;
  }
  throw new Error(`chromium exited before DevTools listened:\n${seen.slice(-2000)}`);
}

const url = await devtoolsUrl().catch((e: Error) => {
  console.error(e.message);
  end(1);
  return "";
});
const ws = new WebSocket(url);
ws.onmessage = (ev) => {
  process.stdout.write(`${JSON.stringify(JSON.parse(String(ev.data)))}\n`);
};
ws.onclose = () => end(0);
ws.onerror = () => end(1);
await new Promise<void>((resolve) => {
  ws.onopen = () => resolve();
});
process.stdout.write(`${JSON.stringify({ relay: "ready" })}\n`);

let buf = "";
const decoder = new TextDecoder();
for await (const chunk of Bun.stdin.stream()) {
  buf += decoder.decode(chunk, { stream: true });
  for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
    const line = buf.slice(0, nl);
    buf = buf.slice(nl + 1);
    if (line.trim()) ws.send(line);
  }
}
end(0);

export {};
