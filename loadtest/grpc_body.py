#!/usr/bin/env python3
"""Writes request bodies: `Echo/Say` through Massa, and the
`ActionProtocol/handleUnary` command Massa sends for it (what the floor and
the plain passthrough proxies send straight to the function). `.bin` files
are gRPC-framed for h2load; `.pb` files are the bare messages for
`massa-load --binary-file`. Hand-encoded protobuf; no dependencies."""
import struct
import sys


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def frame(message):
    return struct.pack(">BI", 0, len(message)) + message


def main(out_dir, text):
    echo = field(1, text.encode())
    any_ = field(1, b"type.googleapis.com/example.echo.EchoRequest") + field(2, echo)
    command = field(2, b"example.echo.Echo") + field(3, b"Say") + field(4, any_)
    for name, message in [("say", echo), ("handle_unary", command)]:
        with open(f"{out_dir}/{name}.bin", "wb") as f:
            f.write(frame(message))
        with open(f"{out_dir}/{name}.pb", "wb") as f:
            f.write(message)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "hello massa")
