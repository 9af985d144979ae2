"""Shared helpers of the peer benchmarks (openfhe_bench.py, seal_bench.py).

Only the standard library: both venvs import it from this directory. The output contract, shared
with `polyhe bench runtime --json`, is one JSON object
    {"params": {...}, "ops_ms": {op: median ms or null for op in OPS}}
plus "ops_min_ms" (same keys, minimum ms), which table.py ignores but RESULTS.md uses to judge noise.
"""

import argparse
import json
import os
import statistics
import time

OPS = ("encode_encrypt", "decrypt_decode", "add", "mul_plain", "mul_relin", "rescale", "rotate",
       "hoisted_rotate")

# Number of rotations (steps 1..8) sharing one decomposition in the hoisted_rotate timing.
HOISTED_ROTATIONS = 8


def arg_parser(description):
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--log-n", type=int, default=14, help="log2 of the ring dimension (default 14)")
    ap.add_argument("--depth", type=int, default=5, help="multiplicative depth (default 5)")
    ap.add_argument("--reps", type=int, default=10, help="timed repetitions per op (default 10)")
    ap.add_argument("--seed", type=int, default=1, help="seed for the cleartext message")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return ap


def check_args(ap, args):
    if not 10 <= args.log_n <= 17:
        ap.error(f"--log-n {args.log_n} is outside 10..17")
    if args.depth < 1:
        ap.error("--depth must be at least 1")
    if args.reps < 1:
        ap.error("--reps must be at least 1")


def time_op(fn, reps, setup=None):
    """Runs fn(state) once untimed (warm-up: caches, allocator), then reps timed calls.

    setup(), if given, builds a fresh state before each call outside the timed region (e.g. an
    empty destination ciphertext). Returns the reps durations in nanoseconds.
    """
    samples = []
    for i in range(reps + 1):
        state = setup() if setup else None
        t0 = time.perf_counter_ns()
        fn(state)
        dt = time.perf_counter_ns() - t0
        if i > 0:
            samples.append(dt)
    return samples


def summarize(samples):
    """ops_ms (median) and ops_min_ms from {op: [ns] or None}; None means 'not offered'."""
    med = {op: (statistics.median(samples[op]) / 1e6 if samples.get(op) else None) for op in OPS}
    low = {op: (min(samples[op]) / 1e6 if samples.get(op) else None) for op in OPS}
    return med, low


def max_err(got, want):
    return max(abs(g - w) for g, w in zip(got, want))


def _proc_stat_cpu():
    """Aggregate CPU jiffies from /proc/stat: (total, busy, steal), or None off Linux."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    total = sum(fields)
    return total, total - idle - iowait - steal, steal


class MachineMonitor:
    """How busy the machine was with other work while this benchmark ran.

    Other users' builds on 2 cores make timings noisy, and the 1-minute load average at the start
    lags behind, so this also measures, over the whole run, the CPUs kept busy by everything except
    this process (others_cpus, 0..cpus) and the hypervisor's steal share.
    """

    def __init__(self):
        self.load = os.getloadavg()[0]
        self.stat = _proc_stat_cpu()
        self.own = self._own_jiffies()

    @staticmethod
    def _own_jiffies():
        t = os.times()
        return (t.user + t.system) * os.sysconf("SC_CLK_TCK")

    def report(self):
        out = {"loadavg_1m": round(self.load, 2), "cpus": os.cpu_count()}
        end = _proc_stat_cpu()
        if self.stat and end:
            total = end[0] - self.stat[0]
            busy = end[1] - self.stat[1]
            steal = end[2] - self.stat[2]
            own = self._own_jiffies() - self.own
            if total > 0:
                cpus = os.cpu_count() or 1
                out["others_cpus"] = round(max(busy - own, 0) * cpus / total, 2)
                out["steal_pct"] = round(100.0 * steal / total, 1)
        return out


def print_result(result, as_json):
    if as_json:
        print(json.dumps(result, indent=2))
        return
    p = result["params"]
    print(f"{p['library']} {p['version']}: N=2^{p['log_n']} depth {p['depth']} dnum {p['dnum']} "
          f"special primes {p['special_primes']} logQP {p['log_qp']} security {p['security']}, "
          f"{p['threads']} thread(s), median of {p['reps']}, machine {p['machine']}")
    print(f"{'op':<16} {'median ms':>10} {'min ms':>10}")
    for op, ms in result["ops_ms"].items():
        if ms is None:
            print(f"{op:<16} {'-':>10} {'-':>10}")
        else:
            print(f"{op:<16} {ms:>10.3f} {result['ops_min_ms'][op]:>10.3f}")
