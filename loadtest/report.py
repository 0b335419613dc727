#!/usr/bin/env python3
"""Turns loadtest/compare.sh's CSVs into the BENCHMARKS.md tables and the
latency-vs-throughput PNG. Needs matplotlib for the plot; when it is not
importable, a venv under /var/tmp gets it from PyPI and this script re-runs
there.

usage: loadtest/report.py loadtest/results
"""
import csv
import os
import statistics
import subprocess
import sys

VENV = "/var/tmp/massa-plot-venv"


def ensure_matplotlib():
    try:
        import matplotlib  # noqa: F401
        return
    except ImportError:
        pass
    python = os.path.join(VENV, "bin", "python")
    if os.environ.get("MASSA_PLOT_VENV") == "1":
        raise SystemExit("matplotlib missing even in the plot venv")
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", "matplotlib"], check=True)
    os.environ["MASSA_PLOT_VENV"] = "1"
    os.execv(python, [python, *sys.argv])


def med(values):
    values = sorted(values)
    return statistics.median(values), values[0], values[-1]


def fmt(triple, unit="", scale=1.0, digits=0):
    m, lo, hi = (v / scale for v in triple)
    return f"{m:.{digits}f}{unit} ({lo:.{digits}f}–{hi:.{digits}f})"


def tables(results):
    rows = list(csv.DictReader(open(os.path.join(results, "compare.csv"))))
    names = ["direct", "massa", "haproxy", "nginx", "caddy"]
    by = {n: [r for r in rows if r["name"] == n] for n in names}
    col = lambda n, k: [float(r[k]) for r in by[n] if r[k] != "-"]
    direct_p50 = med(col("direct", "p50_us"))[0]
    direct_p99 = med(col("direct", "p99_us"))[0]
    label = {"direct": "function directly (floor)", "massa": "**Massa** (Cloudstate wrapping)",
             "haproxy": "HAProxy 2.6 (h2 passthrough)", "nginx": "nginx 1.22 grpc_pass",
             "caddy": "Caddy 2.6 reverse_proxy h2c (GOMAXPROCS=1)"}
    print("| path | req/s | p50 | p99 | added p50 / p99 | req per proxy CPU-s | idle RSS (anon) | RSS after |")
    print("|---|---|---|---|---|---|---|---|")
    for n in names:
        if not by[n]:
            continue
        p50, p99 = med(col(n, "p50_us")), med(col(n, "p99_us"))
        added = "–" if n == "direct" else f"{(p50[0] - direct_p50) / 1e3:.2f} / {(p99[0] - direct_p99) / 1e3:.2f} ms"
        cpu = col(n, "per_cpu")
        rss, idle, anon = col(n, "rss_kib"), col(n, "idle_rss_kib"), col(n, "idle_anon_kib")
        idle_text = f"{med(idle)[0] / 1024:.1f} MiB ({med(anon)[0] / 1024:.1f})" if idle else "–"
        print(f"| {label[n]} | {fmt(med(col(n, 'rps')), ' k', 1e3, 1)} | {p50[0] / 1e3:.2f} ms | {p99[0] / 1e3:.2f} ms | {added} "
              f"| {fmt(med(cpu), ' k', 1e3, 1) if cpu else '–'} | {idle_text} | {f'{med(rss)[0] / 1024:.1f} MiB' if rss else '–'} |")
    if by["massa"] and by["haproxy"]:
        ratio = med(col("massa", "per_cpu"))[0] / med(col("haproxy", "per_cpu"))[0]
        print(f"\nMassa / HAProxy, requests per proxy CPU-second: **{ratio:.2f}×**")
    if by["massa"] and by["nginx"]:
        ratio = med(col("massa", "per_cpu"))[0] / med(col("nginx", "per_cpu"))[0]
        print(f"Massa / nginx, requests per proxy CPU-second: **{ratio:.2f}×**")
    h2load = os.path.join(results, "compare_h2load.csv")
    if os.path.exists(h2load):
        rows = list(csv.DictReader(open(h2load)))
        per = {n: [float(r["per_cpu"]) for r in rows if r["name"] == n] for n in names}
        print("\nWith h2load (nghttp2) as the client, req per proxy CPU-s: "
              + ", ".join(f"{n} {fmt(med(v), ' k', 1e3, 1)}" for n, v in per.items() if v))
        if per.get("massa") and per.get("haproxy"):
            print(f"Massa / HAProxy (h2load): **{med(per['massa'])[0] / med(per['haproxy'])[0]:.2f}×**")


def plot(results):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = list(csv.DictReader(open(os.path.join(results, "sweep.csv"))))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for name, style in [("direct", "k--"), ("massa", "C0-o"), ("haproxy", "C1-s"), ("nginx", "C2-^"), ("caddy", "C3-v")]:
        # A rate whose run produced no report (e.g. the proxy fell over) is skipped.
        # Connected in offered-rate order: past saturation, achieved falls back.
        pts = [
            (float(r["achieved"]), float(r["p50_us"]), float(r["p99_us"]))
            for r in sorted(rows, key=lambda r: float(r["rate"]))
            if r["name"] == name and r["achieved"]
        ]
        if not pts:
            continue
        xs = [p[0] / 1e3 for p in pts]
        axes[0].plot(xs, [p[1] / 1e3 for p in pts], style, label=name)
        axes[1].plot(xs, [p[2] / 1e3 for p in pts], style, label=name)
    for ax, title in zip(axes, ["p50", "p99"]):
        ax.set_title(f"{title} latency vs achieved throughput (open loop)")
        ax.set_xlabel("achieved k req/s")
        ax.set_ylabel("ms")
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    out = os.path.join(results, "latency_vs_throughput.png")
    fig.savefig(out, dpi=110)
    print(f"\nplot: {out}")


if __name__ == "__main__":
    ensure_matplotlib()
    tables(sys.argv[1])
    plot(sys.argv[1])
