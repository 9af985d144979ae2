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


def machine_state():
    """Load average when the run starts: other users' builds on 2 cores make timings noisy."""
    return {"loadavg_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}


def print_result(result, as_json):
    if as_json:
        print(json.dumps(result, indent=2))
        return
    p = result["params"]
    print(f"{p['library']} {p['version']}: N=2^{p['log_n']} depth {p['depth']} dnum {p['dnum']} "
          f"special primes {p['special_primes']} logQP {p['log_qp']} security {p['security']}, "
          f"{p['threads']} thread(s), median of {p['reps']}, load {p['machine']['loadavg_1m']}")
    print(f"{'op':<16} {'median ms':>10} {'min ms':>10}")
    for op, ms in result["ops_ms"].items():
        if ms is None:
            print(f"{op:<16} {'-':>10} {'-':>10}")
        else:
            print(f"{op:<16} {ms:>10.3f} {result['ops_min_ms'][op]:>10.3f}")
