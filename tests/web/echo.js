// Calls Massa's example Echo service with the npm `grpc-web` client, in a
// browser page (bundled by browser.js) or in Node (node_client.js). The
// client's usual stubs come from protoc-gen-grpc-web, a native plugin that
// npm does not carry, so the two messages and two methods are declared here
// on the client's runtime API, encoded with google-protobuf.
"use strict";
const { BinaryReader, BinaryWriter } = require("google-protobuf");
const { GrpcWebClientBase, MethodDescriptor, MethodType } = require("grpc-web");

/** example.echo.EchoRequest: text = 1, fail = 2 (the fields these calls use). */
class EchoRequest {
  constructor(text, fail = "") {
    this.text = text;
    this.fail = fail;
  }
  serializeBinary() {
    const w = new BinaryWriter();
    if (this.text) w.writeString(1, this.text);
    if (this.fail) w.writeString(2, this.fail);
    return w.getResultBuffer();
  }
}

/** example.echo.EchoReply: text = 1. */
class EchoReply {
  static deserializeBinary(bytes) {
    const reply = new EchoReply();
    reply.text = "";
    const r = new BinaryReader(bytes);
    while (r.nextField() && !r.isEndGroup()) {
      if (r.getFieldNumber() === 1) reply.text = r.readString();
      else r.skipField();
    }
    return reply;
  }
}

function method(name, type) {
  return new MethodDescriptor(`/example.echo.Echo/${name}`, type, EchoRequest, EchoReply,
    (request) => request.serializeBinary(), EchoReply.deserializeBinary);
}
const SAY = method("Say", MethodType.UNARY);
const SPLIT = method("Split", MethodType.SERVER_STREAMING);

/** Bounds each call so a hung one is reported instead of stalling the run. */
const CALL_BOUND_MS = 15000;

function bounded(promise) {
  let timer;
  const bound = new Promise((resolve) => {
    timer = setTimeout(() => resolve({ error: { code: -1, message: "no answer within the bound" } }), CALL_BOUND_MS);
  });
  return Promise.race([promise, bound]).finally(() => clearTimeout(timer));
}

const failure = (err) => ({ code: err.code, message: err.message });

/** A unary Say: `{reply}` or `{error: {code, message}}`. */
function say(client, host, request) {
  return bounded(client.unaryCall(host + SAY.getName(), request, {}, SAY)
    .then((reply) => ({ reply: reply.text }), (err) => ({ error: failure(err) })));
}

/** A server-streaming Split: `{replies}` plus `error` when it failed. */
function split(client, host, request) {
  return bounded(new Promise((resolve) => {
    const replies = [];
    const stream = client.serverStreaming(host + SPLIT.getName(), request, {}, SPLIT);
    stream.on("data", (reply) => replies.push(reply.text));
    stream.on("error", (err) => resolve({ replies, error: failure(err) }));
    stream.on("end", () => resolve({ replies }));
  }));
}

/** Every call, in both wire formats: `format: "text"` is
 * application/grpc-web-text (base64), `"binary"` application/grpc-web+proto. */
async function callEcho(host) {
  const out = {};
  for (const format of ["text", "binary"]) {
    const client = new GrpcWebClientBase({ format });
    out[format] = {
      say: await say(client, host, new EchoRequest("héllo web ✓")),
      sayFail: await say(client, host, new EchoRequest("x", "no ✓")),
      split: await split(client, host, new EchoRequest("one two three")),
      splitFail: await split(client, host, new EchoRequest("a b", "boom ✓")),
    };
  }
  return out;
}

module.exports = { callEcho };
