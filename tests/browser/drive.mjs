// Drives headless Chromium over the DevTools protocol, for browser tests
// that must click (the console's publish form, its Peek button): opens
// <url>, waits for the page to load, runs <script> (the body of an async
// function) in it and prints its JSON result on stdout.
//
// usage: node --experimental-websocket drive.mjs <chromium> <url> <script> [<screenshot.png>]
// With a screenshot path, the 1366x900 viewport is saved there afterwards.
// Node 20's WebSocket is behind that flag (on by default from Node 22).
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const [chromium, url, script, screenshot] = process.argv.slice(2);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const profile = fs.mkdtempSync(path.join(os.tmpdir(), "baton-cdp-"));
const browser = spawn(chromium, [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--no-first-run", "--hide-scrollbars", "--remote-debugging-port=0",
  `--user-data-dir=${profile}`, "about:blank",
], { stdio: ["ignore", "ignore", "ignore"] });

function fail(message) {
  console.error(message);
  browser.kill("SIGKILL");
  process.exit(1);
}
setTimeout(() => fail("timed out after 60 s"), 60000).unref();

let port = null;
for (let i = 0; i < 300 && !port; i++) {
  try {
    port = fs.readFileSync(path.join(profile, "DevToolsActivePort"), "utf8").split("\n")[0] || null;
  } catch (e) { /* not yet */ }
  if (!port) await sleep(100);
}
if (!port) fail("chromium did not open its DevTools port");
const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
const target = targets.find((t) => t.type === "page");
const ws = new WebSocket(target.webSocketDebuggerUrl);
await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
let nextId = 0;
const pending = new Map();
ws.onmessage = (event) => {
  const message = JSON.parse(event.data);
  if (message.id && pending.has(message.id)) {
    pending.get(message.id)(message);
    pending.delete(message.id);
  }
};
const send = (method, params) => new Promise((resolve) => {
  const id = ++nextId;
  pending.set(id, resolve);
  ws.send(JSON.stringify({ id, method, params: params || {} }));
});

await send("Runtime.enable");
await send("Emulation.setDeviceMetricsOverride", { width: 1366, height: 900, deviceScaleFactor: 1, mobile: false });
await send("Page.navigate", { url });
for (let i = 0; i < 300; i++) {
  const state = await send("Runtime.evaluate", { expression: "document.readyState", returnByValue: true });
  if (state.result && state.result.result && state.result.result.value === "complete") break;
  await sleep(50);
}
const answer = await send("Runtime.evaluate", {
  expression: `(async () => { ${script} })()`,
  awaitPromise: true,
  returnByValue: true,
});
if (answer.result.exceptionDetails) {
  fail("script failed: " + JSON.stringify(answer.result.exceptionDetails));
}
if (screenshot) {
  const shot = await send("Page.captureScreenshot", { format: "png" });
  fs.writeFileSync(screenshot, Buffer.from(shot.result.data, "base64"));
}
console.log(JSON.stringify(answer.result.result.value === undefined ? null : answer.result.result.value));
ws.close();
const exited = new Promise((resolve) => browser.once("exit", resolve));
browser.kill("SIGKILL");
await exited;
try { fs.rmSync(profile, { recursive: true, force: true }); } catch (e) { /* left in the temp dir */ }
process.exit(0);
