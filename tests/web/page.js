// The test page's script (bundled by browser.js): calls the Massa named by
// the `massa` query parameter and shows the outcome as JSON in #result.
"use strict";
const { callEcho } = require("./echo.js");

function show(outcome) {
  const el = document.getElementById("result");
  el.textContent = JSON.stringify(outcome);
  el.dataset.done = "1";
}

const massa = new URLSearchParams(location.search).get("massa");
callEcho(massa).then(show, (err) => show({ crash: String(err && err.stack || err) }));
