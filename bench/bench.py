#!/usr/bin/env python3
"""Runs the benchmark scenarios and writes a BENCHMARKS.md report (called by bench/run.sh).

Servers run on core 0, load generators (h2load, or the frameworks' own clients) on core 1,
each pinned with taskset. Volley, tonic and the bare h2 floor are interleaved within each
repetition; figures are medians over the repetitions. A run during which other processes
used notable CPU is redone (up to twice).
"""

import json
import os
import platform
import re
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
TARGET = os.environ.get("BENCH_BIN_DIR", os.path.join(BENCH, "target", "release"))
SERVER = os.path.join(TARGET, "bench-server")
CLIENT = os.path.join(TARGET, "bench-client")
TICKS = os.sysconf("SC_CLK_TCK")
QUICK = "--quick" in sys.argv
# Five short repetitions rather than three long ones: the ratios are medians of per-repetition
# ratios, and more pairs resist the host's slow swings better.
REPS = 1 if QUICK else 5
SECONDS = 1.0 if QUICK else 3.0
WARMUP = 0.3 if QUICK else 1.0
# A run is noisy when processes other than the server and the load generator used more
# than this share of one core during it.
NOISE_LIMIT = 0.10
WORK = tempfile.mkdtemp(prefix="volley-bench.")


def log(*args):
    print("[bench]", *args, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def busy_seconds():
    """CPU seconds all cores have spent running processes since boot (user, nice, system,
    steal). Interrupt and softirq time is left out: loopback networking runs there, for the
    benchmark's own traffic, and no process is charged for it."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = (int(v) for v in parts[:8])
    return (user + nice + system + steal) / TICKS


def body_file(name_len):
    path = os.path.join(WORK, f"body-{name_len}.bin")
    if not os.path.exists(path):
        name = b"x" * name_len
        # HelloRequest { name = 1 }: tag 0x0a, varint length, bytes.
        length = name_len
        varint = b""
        while True:
            byte = length & 0x7F
            length >>= 7
            if length:
                varint += bytes([byte | 0x80])
            else:
                varint += bytes([byte])
                break
        msg = b"\x0a" + varint + name
        with open(path, "wb") as f:
            f.write(b"\x00" + struct.pack(">I", len(msg)) + msg)
    return path


class Server:
    def __init__(self, impl, extra=()):
        self.impl = impl
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["taskset", "-c", "0", SERVER, "--impl", impl, "--port", str(self.port), *extra],
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"{impl} server did not start")
        if impl == "tcp":
            return  # no HTTP: nothing to check
        check = subprocess.run(
            ["taskset", "-c", "1", CLIENT, "check", "--port", str(self.port)],
            capture_output=True,
            text=True,
        )
        if check.returncode != 0:
            raise RuntimeError(f"{impl} server failed the gRPC check: {check.stderr}")

    def cpu(self):
        return proc_cpu(self.proc.pid)

    def rss(self):
        return peak_rss_kib(self.proc.pid)

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def measured(server, command):
    """Runs the load command on core 1; returns its output, wall time, server CPU and the
    CPU other processes used."""
    cpu0, busy0 = server.cpu(), busy_seconds()
    child0 = os.times()
    t0 = time.monotonic()
    out = subprocess.run(["taskset", "-c", "1"] + command, capture_output=True, text=True)
    wall = time.monotonic() - t0
    child1 = os.times()
    cpu1, busy1 = server.cpu(), busy_seconds()
    if out.returncode != 0:
        raise RuntimeError(f"{command[0]} failed: {out.stderr[-2000:]}")
    loadgen = (child1.children_user - child0.children_user) + (
        child1.children_system - child0.children_system
    )
    server_cpu = cpu1 - cpu0
    other = max(0.0, (busy1 - busy0) - server_cpu - loadgen)
    return out.stdout, wall, server_cpu, other


def h2load_args(port, conns, streams, name_len, seconds, log_file=None):
    args = [
        "h2load",
        "-c", str(conns),
        "-m", str(streams),
        "-t", "1",
        "-D", f"{int(seconds * 1000)}ms",
        "-H", "content-type: application/grpc",
        "-H", "te: trailers",
        "-d", body_file(name_len),
    ]
    if log_file:
        args += ["--log-file", log_file]
    return args + [f"http://127.0.0.1:{port}/helloworld.Greeter/SayHello"]


def percentiles(log_file):
    durations = []
    with open(log_file) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[1] == "200":
                durations.append(int(parts[2]))
    durations.sort()
    if not durations:
        return {}

    def pct(p):
        return durations[min(len(durations) - 1, int(len(durations) * p))]

    return {"p50_us": pct(0.5), "p99_us": pct(0.99), "p999_us": pct(0.999)}


def run_h2load(impl, conns, streams, name_len):
    for attempt in range(3):
        server = Server(impl)
        try:
            subprocess.run(
                ["taskset", "-c", "1"]
                + h2load_args(server.port, conns, streams, name_len, WARMUP),
                capture_output=True,
            )
            log_file = os.path.join(WORK, "h2load.log")
            # h2load appends to an existing log file: start each run with an empty one.
            if os.path.exists(log_file):
                os.remove(log_file)
            out, wall, server_cpu, other = measured(
                server, h2load_args(server.port, conns, streams, name_len, SECONDS, log_file)
            )
            rss = server.rss()
        finally:
            server.stop()
        if other > NOISE_LIMIT * wall and attempt < 2:
            log(f"  noisy run ({other:.2f} s of other CPU); redoing")
            continue
        done = int(re.search(r"(\d+) succeeded", out).group(1))
        failed = int(re.search(r"(\d+) failed", out).group(1))
        if failed:
            raise RuntimeError(f"{impl}: {failed} requests failed")
        result = {
            "req_s": done / SECONDS,
            "req_per_cpu_s": done / server_cpu if server_cpu else 0.0,
            "rss_kib": rss,
            "noisy": other > NOISE_LIMIT * wall,
        }
        result.update(percentiles(log_file))
        if name_len >= 1 << 20:
            result["mb_s"] = done * name_len / SECONDS / 1e6
        return result
    raise RuntimeError("unreachable")


def run_client(server_impl, client_impl, args):
    for attempt in range(3):
        server = Server(server_impl)
        try:
            command = [CLIENT] + args + ["--impl", client_impl, "--port", str(server.port)]
            warm = [a if a != str(SECONDS) else str(WARMUP) for a in command]
            subprocess.run(["taskset", "-c", "1"] + warm, capture_output=True)
            out, wall, server_cpu, other = measured(server, command)
            rss = server.rss()
        finally:
            server.stop()
        if other > NOISE_LIMIT * wall and attempt < 2:
            log(f"  noisy run ({other:.2f} s of other CPU); redoing")
            continue
        words = dict(w.split("=") for w in out.split())
        return {k: float(v) for k, v in words.items()} | {
            "server_cpu": server_cpu,
            "rss_kib": rss,
        }
    raise RuntimeError("unreachable")


HEDGING_TITLE = "hedging: one backend of three stalls 200 ms on 5 % of its calls"
HEDGING_CALLS = 1000 if QUICK else 4000
HEDGING_DELAY_MS = 10


def run_hedging():
    """Volley's unary latency over a round_robin channel to three backends, one of which
    answers every 20th call after 200 ms: without hedging, then hedged (two attempts,
    hedgingDelay 10 ms). The three servers share core 0; the client runs on core 1."""
    servers = [Server("volley-stalling", ["--every", "20", "--stall-ms", "200"]),
               Server("volley"), Server("volley")]
    try:
        ports = ",".join(str(s.port) for s in servers)
        out = {}
        for mode, extra in [("plain", []), ("hedged", ["--hedging-delay-ms", str(HEDGING_DELAY_MS)])]:
            command = [CLIENT, "hedging", "--ports", ports, "--calls", str(HEDGING_CALLS),
                       "--concurrency", "8", *extra]
            run = subprocess.run(["taskset", "-c", "1"] + command, capture_output=True, text=True)
            if run.returncode != 0:
                raise RuntimeError(f"bench-client hedging failed: {run.stderr[-2000:]}")
            words = dict(w.split("=") for w in run.stdout.split())
            out[mode] = {k: float(v) for k, v in words.items()}
        return out
    finally:
        for s in servers:
            s.stop()


H2LOAD_SCENARIOS = [
    ("unary latency, 1 B name (-c 1 -m 1)", 1, 1, 1),
    ("unary latency, 1 KiB name (-c 1 -m 1)", 1, 1, 1024),
    ("one connection, 100 streams, 1 B (-c 1 -m 100)", 1, 100, 1),
    ("one connection, 100 streams, 1 KiB (-c 1 -m 100)", 1, 100, 1024),
    ("throughput, 1 B (-c 4 -m 50)", 4, 50, 1),
    ("throughput, 1 KiB (-c 4 -m 50)", 4, 50, 1024),
    ("1 MiB unary payload (-c 1 -m 4)", 1, 4, 1 << 20),
]
# volley: Volley on h2; volley-engine: Volley on its own HTTP/2 engine (issue 21).
IMPLS = ["volley", "volley-engine", "tonic", "h2"]
TCP_TITLE = "plain TCP over loopback (no HTTP/2), MB/s"


def median_of(runs, key):
    values = [r[key] for r in runs if key in r]
    return statistics.median(values) if values else None


def paired(runs, base, key):
    """The ratios runs[i][key] / base[i][key] of each repetition (the two ran back to back)."""
    return [a[key] / b[key] for a, b in zip(runs, base) if a.get(key) is not None and b.get(key)]


def paired_median(runs, base, key):
    ratios = paired(runs, base, key)
    return statistics.median(ratios) if ratios else None


def main():
    results = {}
    for rep in range(REPS):
        log(f"repetition {rep + 1}/{REPS}")
        for title, conns, streams, size in H2LOAD_SCENARIOS:
            for impl in IMPLS:
                log(f"  {title}: {impl}")
                results.setdefault(title, {}).setdefault(impl, []).append(
                    run_h2load(impl, conns, streams, size)
                )
        for mode, title in [("bidi", "bidi stream, messages/s"), ("server", "server stream, messages/s")]:
            # volley-reuse: Volley's client reading into one reused message (`message_into`,
            # as grpc-go's RecvMsg); tonic has no equivalent, so it is reported beside the
            # target, not as it.
            for impl in ["volley", "volley-engine", "tonic", "volley-reuse"]:
                log(f"  {title}: {impl}")
                server = "volley" if impl == "volley-reuse" else impl
                r = run_client(server, impl, ["stream", "--mode", mode, "--seconds", str(SECONDS)])
                r["msg_s"] = r["messages"] / r["seconds"]
                r["msg_per_cpu_s"] = r["messages"] / r["server_cpu"] if r["server_cpu"] else 0
                results.setdefault(title, {}).setdefault(impl, []).append(r)
        title = "client cost: 50 tasks of unary calls against the h2 server"
        for impl in ["volley", "volley-engine", "tonic"]:
            log(f"  {title}: {impl}")
            r = run_client(
                "h2", impl, ["unary", "--concurrency", "50", "--seconds", str(SECONDS)]
            )
            r["calls_s"] = r["calls"] / r["seconds"]
            r["client_us_per_call"] = r["cpu_seconds"] / r["calls"] * 1e6
            results.setdefault(title, {}).setdefault(impl, []).append(r)
        log(f"  {TCP_TITLE}")
        r = run_client("tcp", "tcp", ["tcp", "--seconds", str(SECONDS)])
        r["mb_s"] = r["bytes"] / r["seconds"] / 1e6
        results.setdefault(TCP_TITLE, {}).setdefault("tcp", []).append(r)
        log(f"  {HEDGING_TITLE}")
        for mode, r in run_hedging().items():
            results.setdefault(HEDGING_TITLE, {}).setdefault(mode, []).append(r)
    with open(os.path.join(WORK, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    write_report(results)


def fmt(value, unit=""):
    if value is None:
        return "–"
    if value >= 100:
        return f"{value:,.0f}{unit}"
    return f"{value:.2f}{unit}"


def ratio(value):
    return "–" if value is None else f"{value:.2f}x"


def spread(runs, base, key):
    """The median ratio and, over several repetitions, its range: the run's own noise."""
    ratios = paired(runs, base, key)
    if not ratios:
        return "–"
    text = ratio(statistics.median(ratios))
    if len(ratios) > 1:
        text += f" ({min(ratios):.2f}–{max(ratios):.2f})"
    return text


def version_of(crate):
    lock = os.path.join(BENCH, "Cargo.lock")
    try:
        text = open(lock).read()
    except OSError:
        return "?"
    m = re.search(r'name = "' + re.escape(crate) + r'"\nversion = "([^"]+)"', text)
    return m.group(1) if m else "?"


def machine():
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    h2load = subprocess.run(["h2load", "--version"], capture_output=True, text=True).stdout.strip()
    return cpu, os.cpu_count(), platform.release(), rustc, h2load


def engine_target(targets, name, wanted, runs, base, key, ok, base_name="tonic"):
    """A row of the engine's targets: Volley on its engine against `base` (tonic or h2)."""
    value = paired_median(runs, base, key)
    targets.append((name, wanted, spread(runs, base, key),
                    None if value is None else ok(value), base_name))


def target_rows(targets):
    """The rows of a targets table: name, wanted, measured, met (yes/no/–), base."""
    rows = []
    for name, wanted, got, ok, base in targets:
        met = "–" if ok is None else ("yes" if ok else "no")
        rows.append(f"| {name} | {wanted} | {got} | {met} | {base} |")
    return rows


def write_report(results):
    rows = []
    targets = []
    engine_targets = []
    tcp = results.get(TCP_TITLE, {}).get("tcp")
    tcp_mb_s = median_of(tcp, "mb_s") if tcp else None
    for title, _, _, size in H2LOAD_SCENARIOS:
        r = results[title]
        med = {impl: {k: median_of(r[impl], k) for k in r[impl][0]} for impl in IMPLS}
        v, e, t, h = med["volley"], med["volley-engine"], med["tonic"], med["h2"]
        vt = lambda key: paired_median(r["volley"], r["tonic"], key)  # noqa: E731
        et = lambda key: paired_median(r["volley-engine"], r["tonic"], key)  # noqa: E731
        ht = lambda key: paired_median(r["h2"], r["tonic"], key)  # noqa: E731
        metrics = [("req/s", "req_s", ""), ("req per server-CPU-s", "req_per_cpu_s", ""),
                   ("p50", "p50_us", " µs"), ("p99", "p99_us", " µs"), ("p99.9", "p999_us", " µs"),
                   ("peak RSS", "rss_kib", " KiB")]
        if size >= 1 << 20:
            metrics.insert(1, ("MB/s (responses)", "mb_s", ""))
        for name, key, unit in metrics:
            rows.append((title, name, fmt(v.get(key), unit), fmt(e.get(key), unit),
                         fmt(t.get(key), unit), fmt(h.get(key), unit), ratio(vt(key)),
                         ratio(et(key)), ratio(ht(key))))
        if size >= 1 << 20:
            engine_target(engine_targets, "1 MiB unary responses, MB/s", ">= 1.50x",
                          r["volley-engine"], r["tonic"], "mb_s", lambda x: x >= 1.5)
            if tcp_mb_s:
                engine_targets.append((
                    "(not a target) 1 MiB responses as a share of plain loopback TCP",
                    "–", f"engine {e['mb_s'] / tcp_mb_s:.0%}, h2 {v['mb_s'] / tcp_mb_s:.0%},"
                    f" tonic {t['mb_s'] / tcp_mb_s:.0%} of {tcp_mb_s:,.0f} MB/s", None, "–"))
        if title.startswith("throughput, 1 B"):
            engine_target(engine_targets, "unary requests per server-CPU-second, -c 4 -m 50",
                          ">= 2.00x", r["volley-engine"], r["tonic"], "req_per_cpu_s",
                          lambda x: x >= 2.0)
            engine_target(engine_targets, "the same against the bare h2 floor", ">= 1.30x",
                          r["volley-engine"], r["h2"], "req_per_cpu_s", lambda x: x >= 1.3, "h2")
            engine_target(engine_targets, "peak RSS, -c 4 -m 50", "<= 1.00x",
                          r["volley-engine"], r["tonic"], "rss_kib", lambda x: x <= 1.0)
        if title.startswith("unary latency, 1 B"):
            engine_target(engine_targets, "unary p50 latency, -c 1 -m 1", "<= 1.00x",
                          r["volley-engine"], r["tonic"], "p50_us", lambda x: x <= 1.0)
        if title.startswith("throughput, 1 B"):
            targets.append(("unary requests per server-CPU-second, -c 4 -m 50", ">= 1.50x",
                            spread(r["volley"], r["tonic"], "req_per_cpu_s"),
                            vt("req_per_cpu_s") >= 1.5,
                            spread(r["h2"], r["tonic"], "req_per_cpu_s")))
            targets.append(("peak RSS (same run)", "<= 1.00x",
                            spread(r["volley"], r["tonic"], "rss_kib"), vt("rss_kib") <= 1.0,
                            spread(r["h2"], r["tonic"], "rss_kib")))
        if title.startswith("unary latency, 1 B"):
            targets.append(("unary p50 latency, -c 1 -m 1", "<= 0.85x",
                            spread(r["volley"], r["tonic"], "p50_us"), vt("p50_us") <= 0.85,
                            spread(r["h2"], r["tonic"], "p50_us")))
    for title in ["bidi stream, messages/s", "server stream, messages/s"]:
        r = results[title]
        v = {k: median_of(r["volley"], k) for k in r["volley"][0]}
        e = {k: median_of(r["volley-engine"], k) for k in r["volley-engine"][0]}
        t = {k: median_of(r["tonic"], k) for k in r["tonic"][0]}
        for name, key, unit in [("messages/s", "msg_s", ""), ("messages per server-CPU-s", "msg_per_cpu_s", ""),
                                ("peak RSS", "rss_kib", " KiB")]:
            rows.append((title, name, fmt(v.get(key), unit), fmt(e.get(key), unit),
                         fmt(t.get(key), unit), "–",
                         ratio(paired_median(r["volley"], r["tonic"], key)),
                         ratio(paired_median(r["volley-engine"], r["tonic"], key)), "–"))
        engine_target(engine_targets, f"streaming messages/s ({title.split(',')[0]})", ">= 2.00x",
                      r["volley-engine"], r["tonic"], "msg_s", lambda x: x >= 2.0)
        targets.append((f"streaming messages/s ({title.split(',')[0]})", ">= 1.50x",
                        spread(r["volley"], r["tonic"], "msg_s"),
                        paired_median(r["volley"], r["tonic"], "msg_s") >= 1.5, "–"))
        if "volley-reuse" in r:
            reuse_title = f"{title.split(',')[0]}, Volley client with `message_into`"
            u = {k: median_of(r["volley-reuse"], k) for k in r["volley-reuse"][0]}
            for name, key, unit in [("messages/s", "msg_s", ""),
                                    ("messages per server-CPU-s", "msg_per_cpu_s", "")]:
                rows.append((reuse_title, name, fmt(u.get(key), unit), "–", fmt(t.get(key), unit),
                             "–", ratio(paired_median(r["volley-reuse"], r["tonic"], key)), "–",
                             "–"))
            targets.append((f"(not a target) {reuse_title}", "–",
                            spread(r["volley-reuse"], r["tonic"], "msg_s"), None, "–"))
    title = "client cost: 50 tasks of unary calls against the h2 server"
    r = results[title]
    v = {k: median_of(r["volley"], k) for k in r["volley"][0]}
    e = {k: median_of(r["volley-engine"], k) for k in r["volley-engine"][0]}
    t = {k: median_of(r["tonic"], k) for k in r["tonic"][0]}
    for name, key, unit in [("calls/s", "calls_s", ""), ("client CPU per call", "client_us_per_call", " µs")]:
        rows.append((title, name, fmt(v.get(key), unit), fmt(e.get(key), unit),
                     fmt(t.get(key), unit), "–",
                     ratio(paired_median(r["volley"], r["tonic"], key)),
                     ratio(paired_median(r["volley-engine"], r["tonic"], key)), "–"))
    engine_target(engine_targets, "client CPU per call", "<= 0.50x", r["volley-engine"],
                  r["tonic"], "client_us_per_call", lambda x: x <= 0.5)
    if tcp_mb_s:
        rows.append((TCP_TITLE, "MB/s (no framework)", fmt(tcp_mb_s), "–", "–", "–", "–", "–",
                     "–"))
    targets.append(("client CPU per call", "<= 0.70x",
                    spread(r["volley"], r["tonic"], "client_us_per_call"),
                    paired_median(r["volley"], r["tonic"], "client_us_per_call") <= 0.7, "–"))

    hedging = results.get(HEDGING_TITLE)
    hedging_lines = []
    if hedging:
        plain = {k: median_of(hedging["plain"], k) for k in hedging["plain"][0]}
        hedged = {k: median_of(hedging["hedged"], k) for k in hedging["hedged"][0]}
        hedging_lines = [
            "",
            "## Hedging (gRFC A6)",
            "",
            "Volley only (tonic neither retries nor hedges). Three Volley servers on core 0, one of",
            "which answers every 20th call after 200 ms (5 %), the others at once; Volley's client on",
            f"core 1 makes {HEDGING_CALLS} unary calls from 8 tasks over one `round_robin` channel, first",
            f"without a policy, then with `hedgingPolicy` (`maxAttempts` 2, `hedgingDelay` {HEDGING_DELAY_MS} ms).",
            "Medians of the repetitions.",
            "",
            "| latency | without hedging | with hedging | without / with |",
            "|---|---|---|---|",
        ]
        for name, key in [("p50", "p50_ms"), ("p90", "p90_ms"), ("p99", "p99_ms"),
                          ("p99.9", "p999_ms"), ("max", "max_ms")]:
            hedging_lines.append(
                f"| {name} | {fmt(plain.get(key), ' ms')} | {fmt(hedged.get(key), ' ms')} |"
                f" {ratio(paired_median(hedging['plain'], hedging['hedged'], key))} |")
        targets.append(("(hedging) p99 latency without / with hedging", "–",
                        spread(hedging["plain"], hedging["hedged"], "p99_ms"), None, "–"))

    cpu, cores, kernel, rustc, h2load = machine()
    lines = [
        "# Benchmarks",
        "",
        "Written by `bench/run.sh`" + (" --quick (1 repetition of 1 s: indicative only)" if QUICK else "")
        + f" on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Volley, tonic and a bare `h2`",
        "server (the floor any h2-based stack can reach) answer the same helloworld `SayHello`",
        "(`message = request.name`); each server runs a current-thread Tokio runtime pinned to core 0,",
        "the load generator is pinned to core 1. h2load drives the unary scenarios (every server is",
        "first checked with a real gRPC call); the streaming scenarios use each framework's own client;",
        "the client-cost scenario runs Volley's and tonic's clients against the h2 server.",
        f"Figures are medians of {REPS} repetition(s) of {SECONDS:g} s, after a {WARMUP:g} s warm-up,",
        "frameworks interleaved. **Ratios are to tonic, measured in the same run**: the median of",
        "the repetitions' own ratios (each repetition runs the servers back to back, so a slow",
        "swing of the host cancels out); the targets table gives their range too, which is the",
        "run's noise (the bare h2 floor, whose code never changes, shows it best).",
        "Requests per server-CPU-second is the fair throughput figure here: with two cores, h2load on",
        "one core caps raw req/s.",
        "The rows \"Volley client with `message_into`\" read each reply into one reused message",
        "(as grpc-go's `RecvMsg(m)`), which saves an allocation and a free per message; tonic",
        "offers no such call, so these rows are not the target's figure.",
        "",
        f"Machine: {cpu}, {cores} cores, Linux {kernel}. {rustc}; {h2load}.",
        f"Versions: tonic {version_of('tonic')}, h2 {version_of('h2')}, hyper {version_of('hyper')},"
        f" prost {version_of('prost')}, tokio {version_of('tokio')}; release profile with `lto = \"fat\"`,"
        " `codegen-units = 1`.",
        "",
        "## Targets (issue: benchmarks; Volley on h2)",
        "",
        "| target | wanted | Volley / tonic | met | bare h2 / tonic |",
        "|---|---|---|---|---|",
    ]
    lines += target_rows(targets)
    lines += [
        "",
        "## Targets (issue 21: Volley on its own HTTP/2 engine)",
        "",
        "Both sides of Volley on the engine where Volley runs both (the streaming scenarios);",
        "its server under h2load; its client against the bare h2 server in the client-cost row.",
        "",
        "| target | wanted | Volley engine / base | met | base |",
        "|---|---|---|---|---|",
    ]
    lines += target_rows(engine_targets)
    lines += [
        "",
        "## All scenarios",
        "",
        "Volley: on h2; Volley engine: on its own HTTP/2 engine.",
        "",
        "| scenario | measure | Volley | Volley engine | tonic | bare h2 | Volley / tonic"
        " | engine / tonic | h2 / tonic |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(row) + " |")
    lines += hedging_lines
    lines += ["", "Raw results: `results.json` in the run's work directory"
              f" (`{WORK}` for this run).", ""]
    # The committed BENCHMARKS.md is the reference run: a run rewrites it only when asked to
    # (BENCH_REPORT=BENCHMARKS.md, see bench/README.md).
    out = os.environ.get("BENCH_REPORT", os.path.join(WORK, "BENCHMARKS.md"))
    with open(out, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
