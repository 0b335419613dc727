// Bundles page.js with esbuild, serves the page on each given 127.0.0.1 port
// (each a distinct origin for CORS), loads every one in headless Debian
// Chromium through playwright-core, and writes what each page showed plus
// the browser console (where CORS refusals are reported) as JSON:
// {"<port>": {"result": <page outcome>, "console": [lines]}}.
// usage: node browser.js <out.json> <massa base URL> <page port>...
"use strict";
const fs = require("fs");
const http = require("http");
const path = require("path");
const esbuild = require("esbuild");
const { chromium } = require("playwright-core");

/** The whole run is bounded; the test's own bound is larger. */
const RUN_BOUND_MS = 90000;
/** Chromium flags for this closed network (see the env notes): no
 * background connections, no QUIC, no GPU, root without a sandbox. */
const CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

async function bundle() {
  const built = await esbuild.build({
    entryPoints: [path.join(__dirname, "page.js")],
    bundle: true,
    write: false,
    format: "iife",
    nodePaths: (process.env.NODE_PATH || "").split(path.delimiter).filter(Boolean),
    logLevel: "warning",
  });
  return built.outputFiles[0].contents;
}

function serve(port, files) {
  const server = http.createServer((req, res) => {
    const name = new URL(req.url, "http://page").pathname.slice(1) || "index.html";
    const file = files[name];
    if (!file) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": file.type }).end(file.body);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve(server));
  });
}

async function main() {
  const [out, massa, ...ports] = process.argv.slice(2);
  const files = {
    "index.html": { type: "text/html; charset=utf-8", body: fs.readFileSync(path.join(__dirname, "index.html")) },
    "bundle.js": { type: "text/javascript; charset=utf-8", body: await bundle() },
  };
  const servers = await Promise.all(ports.map((port) => serve(Number(port), files)));
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: CHROMIUM_ARGS });
  const seen = {};
  try {
    for (const port of ports) {
      const page = await browser.newPage();
      const consoleLines = [];
      page.on("console", (msg) => consoleLines.push(msg.text()));
      page.on("pageerror", (err) => consoleLines.push(`page error: ${err.message}`));
      await page.goto(`http://127.0.0.1:${port}/?massa=${encodeURIComponent(massa)}`);
      const result = await page.waitForSelector("#result[data-done]", { timeout: RUN_BOUND_MS });
      seen[port] = { result: JSON.parse(await result.textContent()), console: consoleLines };
      await page.close();
    }
  } finally {
    await browser.close();
    servers.forEach((s) => s.close());
  }
  fs.writeFileSync(out, JSON.stringify(seen));
}

setTimeout(() => {
  console.error(`browser.js: no outcome within ${RUN_BOUND_MS} ms`);
  process.exit(2);
}, RUN_BOUND_MS).unref();
main().catch((err) => {
  console.error(err);
  process.exit(1);
});
