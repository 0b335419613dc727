#!/usr/bin/env python3
"""Hostile clients against two Massa builds, side by side, loopback only.

Each attack runs on a fresh proxy + function pair (--workers 1) and records
the proxy's RSS (VmRSS) before, at its peak during (sampled every 100 ms) and
5 s after the attack, plus the attack's effect: zero-window unary readers, a
stalled streaming reader next to bystanders, NUL bytes in entity ids across a
restart, a burst of new keys against the active-entity cap, and silent or
half-preface connections. Flags only the hardened build knows go to --new
only. Every wait is bounded; all processes are killed at the end, also on
errors. Output: one Markdown table per attack, also in results/attacks.md.

setup: python3 -m venv /var/tmp/massa-attacks-venv
       /var/tmp/massa-attacks-venv/bin/pip install h2
usage: loadtest/attacks.py --old OLD/massa --new NEW/massa --function massa-example-fn
"""
import argparse
import collections
import contextlib
import os
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import h2.config
import h2.errors
import h2.connection
import h2.events
import h2.exceptions
from h2.settings import SettingCodes, Settings

CART = "/com.example.shoppingcart.ShoppingCart/"
ECHO = "/example.echo.Echo/"
MIB = 1 << 20
RSS_GUARD_KIB = 8 * MIB  # 8 GiB: past this the proxy is killed, not the machine
CODES = ("OK CANCELLED UNKNOWN INVALID_ARGUMENT DEADLINE_EXCEEDED NOT_FOUND ALREADY_EXISTS PERMISSION_DENIED "
         "RESOURCE_EXHAUSTED FAILED_PRECONDITION ABORTED OUT_OF_RANGE UNIMPLEMENTED INTERNAL UNAVAILABLE "
         "DATA_LOSS UNAUTHENTICATED").split()


# --- protobuf and gRPC framing, by hand --------------------------------------

def varint(n):
    out = bytearray()
    while True:
        out.append(n & 0x7F | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def text(number, value):
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def add_item(user, product, name="x"):
    return text(1, user) + text(2, product) + text(3, name) + varint(4 << 3) + varint(1)


def read_varint(buf, i):
    n = shift = 0
    while buf[i] & 0x80:
        n, i, shift = n | (buf[i] & 0x7F) << shift, i + 1, shift + 7
    return n | buf[i] << shift, i + 1


def cart_items(cart):
    """How many LineItems a Cart holds (its only field, 1, length-delimited)."""
    i = count = 0
    while i < len(cart):
        size, i = read_varint(cart, i + 1)
        i, count = i + size, count + 1
    return count


def grpc_frame(message):
    return struct.pack(">BI", 0, len(message)) + message


def grpc_messages(data):
    i, out = 0, []
    while i + 5 <= len(data):
        size = struct.unpack(">I", data[i + 1:i + 5])[0]
        out.append(bytes(data[i + 5:i + 5 + size]))
        i += 5 + size
    return out


# --- a small h2c client --------------------------------------------------------

class Call:
    def __init__(self, outbound=b"", note=None):
        self.outbound, self.note = outbound, note
        self.status = self.reset = self.ended = None
        self.data = bytearray()
        self.started = time.monotonic()
        self.done = note is not None

    def outcome(self):
        if self.status is not None:
            return CODES[self.status] if self.status < len(CODES) else f"status {self.status}"
        if self.reset is not None:
            return f"RST_STREAM {h2.errors.ErrorCodes(self.reset).name}"
        return self.note or "no answer"

    def replies(self):
        return grpc_messages(self.data)


class H2Client:
    """One h2c connection and a reader thread. With window=0 the proxy never
    gets stream credit: the client reads frames but grants no DATA."""

    def __init__(self, port, window=MIB, keep_data=True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.settimeout(None)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.h2.local_settings = Settings(client=True, initial_values={
            SettingCodes.INITIAL_WINDOW_SIZE: window, SettingCodes.ENABLE_PUSH: 0})
        self.grant, self.keep_data = window > 0, keep_data
        self.cond = threading.Condition()
        self.calls, self.closed, self.settings_seen = {}, False, False
        with self.cond:
            self.h2.initiate_connection()
            if self.grant:
                self.h2.increment_flow_control_window(64 * MIB)
            self._flush()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.until(lambda: self.settings_seen, 5)  # they carry the proxy's stream limit

    def start(self, path, message):
        headers = [(":method", "POST"), (":scheme", "http"), (":authority", "127.0.0.1"), (":path", path),
                   ("content-type", "application/grpc"), ("te", "trailers")]
        with self.cond:
            if self.closed:
                return Call(note="connection closed")
            try:
                sid = self.h2.get_next_available_stream_id()
                self.h2.send_headers(sid, headers)
            except h2.exceptions.TooManyStreamsError:
                return Call(note="not sent (stream limit)")
            call = self.calls[sid] = Call(grpc_frame(message))
            self._pump()
            self._flush()
            return call

    def until(self, condition, timeout):
        with self.cond:
            self.cond.wait_for(lambda: self.closed or condition(), timeout)

    def wait(self, calls, timeout):
        self.until(lambda: all(c.done for c in calls), timeout)

    def unary(self, path, message, timeout=10):
        call = self.start(path, message)
        self.wait([call], timeout)
        return call

    def close(self):
        with self.cond:
            self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.reader.join(2)
        self.sock.close()

    def _pump(self):
        """Sends pending request bytes as far as the proxy's windows allow."""
        for sid, call in self.calls.items():
            while call.outbound and not call.done:
                n = min(len(call.outbound), self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
                if n <= 0:
                    break
                chunk, call.outbound = call.outbound[:n], call.outbound[n:]
                self.h2.send_data(sid, chunk, end_stream=not call.outbound)

    def _flush(self):
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def _read(self):
        while not self.closed:
            try:
                if not select.select([self.sock], [], [], 0.2)[0]:
                    continue
                data = self.sock.recv(1 << 16)
            except OSError:
                data = b""
            with self.cond:
                try:
                    if not data:
                        raise ConnectionError("closed by the proxy")
                    for event in self.h2.receive_data(data):
                        self._on(event)
                    self._pump()
                    self._flush()
                except (ConnectionError, OSError, h2.exceptions.ProtocolError):
                    self.closed = True
                    for call in self.calls.values():
                        call.note = call.note or "connection closed"
                self.cond.notify_all()

    def _on(self, event):
        call = self.calls.get(getattr(event, "stream_id", None))
        if isinstance(event, h2.events.RemoteSettingsChanged):
            self.settings_seen = True
        elif call is None:
            return
        elif isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
            status = dict(event.headers).get("grpc-status")
            if status is not None:
                call.status = int(status)
        elif isinstance(event, h2.events.DataReceived):
            if self.keep_data:
                call.data += event.data
            if self.grant:
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
            call.reset = getattr(event, "error_code", None)
            call.done, call.ended = True, time.monotonic()


def tally(calls):
    return ", ".join(f"{k} x{n}" for k, n in collections.Counter(c.outcome() for c in calls).most_common())


def items_in(call):
    replies = call.replies()
    return cart_items(replies[0]) if call.status == 0 and replies else None


# --- processes -------------------------------------------------------------------

PROCS = []
USED_PORTS = set()


def free_port():
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in USED_PORTS:
            USED_PORTS.add(port)
            return port


def spawn(argv, log, ready, patience=30):
    proc = subprocess.Popen(argv, stdout=open(log, "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    PROCS.append(proc)
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline and proc.poll() is None:
        if ready():
            return proc
        time.sleep(0.1)
    raise RuntimeError(f"{argv[0]} not ready; see {log}")


def stop(proc, patience=15):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(patience)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stop_all():
    for proc in PROCS:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    PROCS.clear()


def http_ok(url):
    try:
        return urllib.request.urlopen(url, timeout=1).status == 200
    except OSError:
        return False


class Proxy:
    def __init__(self, env, fn_port, store=("--store", "memory"), extra=()):
        self.http, self.admin = free_port(), free_port()
        argv = [env.massa, "--user-function-port", str(fn_port), "--http-port", str(self.http),
                "--admin-port", str(self.admin), "--http-interface", "127.0.0.1",
                "--admin-interface", "127.0.0.1", "--workers", "1", *store, *extra]
        log = os.path.join(env.tmp, f"massa-{self.http}.log")
        self.proc = spawn(argv, log, lambda: http_ok(f"http://127.0.0.1:{self.admin}/health/ready"))
        self.pid = self.proc.pid

    def metric(self, name):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/metrics", timeout=2) as r:
            lines = r.read().decode().splitlines()
        return sum(float(l.rsplit(None, 1)[1]) for l in lines if l.split("{")[0].split(" ")[0] == name)


@contextlib.contextmanager
def function(env):
    port = free_port()
    log = os.path.join(env.tmp, f"fn-{port}.log")
    proc = spawn([env.function, "--port", str(port)], log, lambda: b"listening on" in open(log, "rb").read())
    try:
        yield port
    finally:
        stop(proc)


@contextlib.contextmanager
def pair(env, extra=()):
    with function(env) as fn_port:
        proxy = Proxy(env, fn_port, extra=extra)
        try:
            yield proxy
        finally:
            stop(proxy.proc)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))


class Peak(threading.Thread):
    """The highest value of read() sampled every period s, until stop();
    with a guard, kills pid once the value passes it."""

    def __init__(self, read, period, pid=None, guard=None):
        super().__init__(daemon=True)
        self.read, self.period, self.pid, self.guard = read, period, pid, guard
        self.peak, self.killed, self.halt = read(), False, threading.Event()
        self.start()

    def run(self):
        for _ in range(int(300 / self.period)):  # 5 minutes at most
            if self.halt.wait(self.period):
                return
            with contextlib.suppress(OSError, ValueError, StopIteration):
                self.peak = max(self.peak, self.read())
            if self.guard and self.peak > self.guard and not self.killed:
                os.kill(self.pid, signal.SIGKILL)
                self.killed = True

    def stop(self):
        self.halt.set()
        self.join()
        return self.peak


def rss_peak(pid):
    return Peak(lambda: rss_kib(pid), 0.1, pid, RSS_GUARD_KIB)


def memory(before, peak, after, killed=False):
    mib = lambda kib: f"{kib / 1024:.0f}"
    return {"RSS before (MiB)": mib(before), "RSS peak (MiB)": mib(peak) + (" (killed at the guard)" if killed else ""),
            "RSS peak - before (MiB)": mib(peak - before),
            "RSS 5 s after (MiB)": mib(after) if after else "n/a (proxy killed)"}


def settle(pid):
    time.sleep(5)
    try:
        return rss_kib(pid)
    except (OSError, StopIteration):  # gone, or a zombie without VmRSS
        return None


# --- the attacks -------------------------------------------------------------------

def zero_window_unary(env):
    with pair(env) as px:
        client = H2Client(px.http)
        added = client.unary(CART + "AddItem", add_item("big", "blob", "x" * MIB))
        before, peak = rss_kib(px.pid), rss_peak(px.pid)
        readers = [H2Client(px.http, window=0, keep_data=False) for _ in range(3)]
        calls = [r.start(CART + "GetCart", text(1, "big")) for r in readers for _ in range(256)]
        time.sleep(5)
        bystander = client.unary(CART + "GetCart", text(1, "big"), 10)
        final = sum(1 for c in calls if c.status is not None)
        outcomes = tally(calls)
        for r in [client, *readers]:
            r.close()
        top = peak.stop()
        return {**memory(before, top, settle(px.pid), peak.killed), "AddItem of the 1 MiB item": added.outcome(),
                "calls with a final status (of 768)": str(final), "outcomes after 5 s": outcomes,
                "normal GetCart meanwhile": f"{bystander.outcome()} ({items_in(bystander)} items)"}


def stalled_stream(env):
    with pair(env, ["--send-stall-timeout", "5s"] if env.new else []) as px:
        before, peak = rss_kib(px.pid), rss_peak(px.pid)
        stalled = H2Client(px.http, window=0, keep_data=False)
        split = stalled.start(ECHO + "Split", text(1, " ".join(["w" * 1024] * 10240)))
        stalled.until(lambda: split.done or not split.outbound, 20)
        sent = "sent" if not split.outbound else f"{len(split.outbound)} bytes unsent after 20 s"
        time.sleep(1)  # the function's replies pile up against the closed window
        client, says, t0 = H2Client(px.http), [], time.monotonic()
        for batch in range(10):  # 50 at a time, 5 s patience per batch
            wave = [(f"bystander {batch * 50 + i}", client.start(ECHO + "Say", text(1, f"bystander {batch * 50 + i}")))
                    for i in range(50)]
            client.wait([c for _, c in wave], 5)
            says += wave
        took = time.monotonic() - t0
        ok = sum(1 for want, c in says if c.status == 0 and c.replies() == [text(1, want)])
        failed = [c for want, c in says if not (c.status == 0 and c.replies() == [text(1, want)])]
        stalled.wait([split], max(0.0, split.started + 20 - time.monotonic()))
        if split.reset is not None:
            ended = f"{split.outcome()} {split.ended - split.started:.1f} s after the call"
        else:
            ended = split.outcome() if split.done else "no reset within 20 s"
        after_say = client.unary(ECHO + "Say", text(1, "after"), 5).outcome()
        client.close()
        stalled.close()
        top = peak.stop()
        return {**memory(before, top, settle(px.pid), peak.killed), "10 MiB Split request": sent,
                "bystander Say OK (of 500)": str(ok), "bystander failures": tally(failed) or "none",
                "bystander phase (s)": f"{took:.1f}", "stalled Split stream": ended, "Say afterwards": after_say}


def add_items(port, batches, patience=120):
    """Each batch of AddLineItem messages in order on its own connection, the
    batches in parallel; calls past the patience are not tried."""
    calls, deadline = [], time.monotonic() + patience

    def run(batch):
        client = H2Client(port)
        for message in batch:
            calls.append(client.unary(CART + "AddItem", message, 10) if time.monotonic() < deadline
                         else Call(note="not tried (deadline)"))
        client.close()

    threads = [threading.Thread(target=run, args=(b,), daemon=True) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(patience + 30)
    return calls


def nul_ids(env):
    """3 events for V\\0Z, then 8 x 513 more for V\\0 + digit (past one 4096-key scan
    step); after each, a restart on the same data and GetCart{V} (20 s at most)."""
    store = ("--store", "rocksdb", "--data-dir", tempfile.mkdtemp(dir=env.tmp), "--durability", "async")
    hung = "hung: no answer in 20 s, proxy killed"
    shows = lambda c: f"{items_in(c)} items" if c.status == 0 else (c.outcome() if c.done else hung)
    phases = [("3 events for V\\0Z", [[add_item("V\0Z", f"foreign-{i}") for i in range(3)]]),
              ("4104 events for V\\0 + digit", [[add_item(f"V\0{w}", f"p{i}") for i in range(513)] for w in range(8)])]
    with function(env) as fn_port:
        px, result, top = Proxy(env, fn_port, store), {}, 0
        before, peak = rss_kib(px.pid), rss_peak(px.pid)
        for label, batches in phases:
            result[f"AddItem, {label}"] = tally(add_items(px.http, batches))
            top = max(top, peak.stop())
            stop(px.proc, 5)
            px = Proxy(env, fn_port, store)
            peak, client = rss_peak(px.pid), H2Client(px.http)
            mine = client.unary(CART + "GetCart", text(1, "V"), 20)
            result[f"after {label}: GetCart{{V}} (correct: 0)"] = shows(mine)
            if not mine.done:  # the old build spins here, its RSS climbing by hundreds of MiB/s
                px.proc.kill()
                client.close()
                break
            if len(batches) == 1:
                result["GetCart{V\\0Z} (correct: 3)"] = shows(client.unary(CART + "GetCart", text(1, "V\0Z"), 20))
            client.close()
        top = max(top, peak.stop())
        after = settle(px.pid)
        stop(px.proc, 5)
        return {**memory(before, top, after), **result}


def entity_burst(env):
    with pair(env, ["--max-active-entities-per-core", "20"]) as px:
        before, peak = rss_kib(px.pid), rss_peak(px.pid)
        active, t0 = Peak(lambda: px.metric("massa_active_entities"), 0.05), time.monotonic()
        calls = add_items(px.http, [[add_item(f"k{w}-{i}", "p") for i in range(100)] for w in range(16)])
        took = time.monotonic() - t0
        ok = sum(1 for c in calls if c.status == 0)
        top = peak.stop()
        return {**memory(before, top, settle(px.pid), peak.killed),
                "peak massa_active_entities (cap 20)": f"{active.stop():.0f}", "AddItem OK (of 1600)": str(ok),
                "AddItem failures": tally([c for c in calls if c.status != 0]) or "none",
                "burst duration (s)": f"{took:.1f}"}


def closed(sock):
    """Whether the proxy closed this connection (drains whatever it sent)."""
    sock.setblocking(False)
    for _ in range(100):
        try:
            if not sock.recv(1 << 16):
                return True
        except BlockingIOError:
            return False
        except OSError:
            return True
    return False


def idle_connections(env):
    with pair(env, ["--handshake-timeout", "10s"] if env.new else []) as px:
        before, peak = rss_kib(px.pid), rss_peak(px.pid)
        silent, partial, refused = [], [], 0
        for i in range(1000):
            try:
                s = socket.create_connection(("127.0.0.1", px.http), timeout=5)
            except OSError:
                refused += 1
                continue
            if i % 2:
                s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[:12])
            (partial if i % 2 else silent).append(s)
        time.sleep(15)
        gone_silent, gone_partial = sum(map(closed, silent)), sum(map(closed, partial))
        client = H2Client(px.http)
        say = client.unary(ECHO + "Say", text(1, "still here"), 5)
        client.close()
        for s in silent + partial:
            s.close()
        top = peak.stop()
        wrong = say.status == 0 and say.replies() != [text(1, "still here")]
        works = say.outcome() + (" (wrong reply)" if wrong else "")
        return {**memory(before, top, settle(px.pid), peak.killed), "connects that failed": str(refused),
                "silent closed after 15 s (of 500)": str(gone_silent),
                "half-preface closed after 15 s (of 500)": str(gone_partial), "Say with them open": works}


ATTACKS = [("1. Zero-window unary readers", zero_window_unary),
           ("2. Stalled streaming reader next to bystanders", stalled_stream),
           ("3. NUL bytes in entity ids (RocksDB, restart)", nul_ids),
           ("4. Burst of new keys vs --max-active-entities-per-core 20", entity_burst),
           ("5. Idle and partial-preface connections", idle_connections)]


def table(title, columns):
    rows = list(dict.fromkeys(k for c in columns.values() for k in c))
    lines = [f"### {title}", "", "| | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    lines += [f"| {r} | " + " | ".join(c.get(r, "") for c in columns.values()) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--old", required=True)
    ap.add_argument("--new", required=True)
    ap.add_argument("--function", required=True)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "attacks.md"))
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    tmp = tempfile.mkdtemp(prefix="massa-attacks-")
    results = collections.defaultdict(dict)
    try:
        for label, massa in (("old", args.old), ("new", args.new)):
            env = argparse.Namespace(massa=massa, function=args.function, tmp=tmp, new=label == "new")
            for title, attack in ATTACKS:
                print(f"[{label}] {title} ...", file=sys.stderr, flush=True)
                try:
                    results[title][label] = attack(env)
                except Exception as e:  # recorded in the table; the other attacks still run
                    results[title][label] = {"error": f"{type(e).__name__}: {e}"}
                finally:
                    stop_all()
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    report = "\n".join(table(t, {k: results[t].get(k, {}) for k in ("old", "new")}) for t, _ in ATTACKS)
    print(report)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("# Hostile clients: before and after the hardening\n\n"
                f"`{' '.join(['python3', 'loadtest/attacks.py', *sys.argv[1:]])}` on {os.cpu_count()} cores, "
                "--workers 1, one fresh proxy + function pair per attack.\n\n" + report)


if __name__ == "__main__":
    main()
