#!/usr/bin/env python3
"""Entity memory and activation latency through Massa, loopback only.

1. Memory per active entity: RSS of the proxy before and after activating N
   event-sourced carts (one AddItem each, passivation far away).
2. Activation latency: GetCart on M carts whose entities were passivated
   (state in the per-core hot cache), then the same after a proxy restart
   (cache empty, state read from RocksDB). Side by side, same client.

Needs grpcio (`pip install grpcio`) and release binaries. Every loop is
bounded by its count; the proxy and function are stopped at the end.

usage: loadtest/entities.py [entities=20000] [activations=2000]
"""
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import grpc

BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release")
CART = "com.example.shoppingcart.ShoppingCart"


def field(number, text):
    data = text.encode()
    return bytes([number << 3 | 2, len(data)]) + data


def add_item(user):
    # AddLineItem{user_id, product_id, name, quantity=1}
    return field(1, user) + field(2, "apple") + field(3, "Apple") + bytes([4 << 3, 1])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))


def wait_ready(admin):
    for _ in range(200):
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{admin}/health/ready", timeout=1).status == 200:
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise SystemExit("massa did not become ready")


def start_massa(fn_port, data, extra):
    port, admin = free_port(), free_port()
    proc = subprocess.Popen(
        [f"{BIN}/massa", "--http-port", str(port), "--admin-port", str(admin), "--user-function-port", str(fn_port),
         "--http-interface", "127.0.0.1", "--admin-interface", "127.0.0.1", "--data-dir", data, *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(admin)
    return proc, port


def run_all(channel, method, bodies, window=256):
    """Sends `bodies` with at most `window` in flight; returns latencies (s)."""
    call = channel.unary_unary(f"/{CART}/{method}")
    latencies, pending = [], []
    for body in bodies:
        pending.append((time.perf_counter(), call.future(body, timeout=30)))
        if len(pending) >= window:
            start, fut = pending.pop(0)
            fut.result()
            latencies.append(time.perf_counter() - start)
    for start, fut in pending:
        fut.result()
        latencies.append(time.perf_counter() - start)
    return latencies


def serial(channel, method, bodies):
    call = channel.unary_unary(f"/{CART}/{method}")
    out = []
    for body in bodies:
        start = time.perf_counter()
        call(body, timeout=30)
        out.append(time.perf_counter() - start)
    return out


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] * 1e6


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    m = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    data = tempfile.mkdtemp(prefix="massa-entities-")
    fn_port = free_port()
    fn = subprocess.Popen([f"{BIN}/massa-example-fn", "--port", str(fn_port)], stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    try:
        proxy, port = start_massa(fn_port, data, ["--workers", "1", "--passivation-timeout", "1h"])
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            run_all(ch, "AddItem", [add_item("warmup")])
            before = rss_kib(proxy.pid)
            t = time.perf_counter()
            run_all(ch, "AddItem", [add_item(f"mem-{i}") for i in range(n)])
            elapsed = time.perf_counter() - t
            after = rss_kib(proxy.pid)
        proxy.send_signal(signal.SIGTERM)
        proxy.wait()
        print(f"| active entities | {n} |")
        print(f"| proxy RSS before → after | {before} KiB → {after} KiB |")
        print(f"| memory per active entity | {(after - before) * 1024 / n:.0f} bytes |")
        print(f"| activation rate (first command each, client-bound) | {n / elapsed:.0f} /s |")

        # Activation latency: hot cache vs RocksDB.
        proxy, port = start_massa(fn_port, data, ["--workers", "1", "--passivation-timeout", "200ms"])
        users = [f"act-{i}" for i in range(m)]
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            run_all(ch, "AddItem", [add_item(u) for u in users])
            time.sleep(1.0)  # all passivated into the cache
            cached = serial(ch, "GetCart", [field(1, u) for u in users])
            warm = serial(ch, "GetCart", [field(1, u) for u in users])  # active: no activation
        proxy.send_signal(signal.SIGTERM)
        proxy.wait()
        proxy, port = start_massa(fn_port, data, ["--workers", "1", "--passivation-timeout", "200ms"])
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            cold = serial(ch, "GetCart", [field(1, u) for u in users])
        proxy.send_signal(signal.SIGTERM)
        proxy.wait()
        print()
        print("| GetCart (serial, one client) | p50 | p99 |")
        print("|---|---|---|")
        for label, values in [("entity active (no activation)", warm), ("activation from the hot cache", cached),
                              ("activation from RocksDB (after restart)", cold)]:
            print(f"| {label} | {pct(values, 0.5):.0f} µs | {pct(values, 0.99):.0f} µs |")
        print(f"\nmedian activation cost over an active entity: cache {statistics.median(cached) * 1e6 - statistics.median(warm) * 1e6:.0f} µs, "
              f"RocksDB {statistics.median(cold) * 1e6 - statistics.median(warm) * 1e6:.0f} µs")
    finally:
        fn.kill()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
