// The same Echo calls from Node (no browser, no CORS): grpc-web's XHR
// transport runs on the `xhr2` package.
// usage: node node_client.js <out.json> <massa base URL>
"use strict";
global.XMLHttpRequest = require("xhr2");
const fs = require("fs");
const { callEcho } = require("./echo.js");

const [out, massa] = process.argv.slice(2);
callEcho(massa).then((outcome) => {
  fs.writeFileSync(out, JSON.stringify(outcome));
}, (err) => {
  console.error(err);
  process.exitCode = 1;
});
