#!/usr/bin/env python3
"""Markdown summary of repeat.sh output: one table per configuration.

    python3 summarize.py OUTDIR

Files are grouped by name without the `_rN` round suffix. For each op it prints the median of
every run (the unit each benchmark reports), their lowest value — the headline, being the run
least disturbed by other work on the shared 2 cores — the spread (highest/lowest), and the fastest
single call over all runs (a lower bound, what the op costs undisturbed). Each run's
machine state (CPUs busy with other work during the run, load average at its start) is listed so
noisy runs can be recognised. Standard library only.
"""

import glob
import json
import os
import re
import sys

OPS = ("encode_encrypt", "decrypt_decode", "add", "mul_plain", "mul_relin", "rescale", "rotate",
       "hoisted_rotate")


def main(argv):
    if len(argv) != 2 or not os.path.isdir(argv[1]):
        print("usage: summarize.py OUTDIR", file=sys.stderr)
        return 2
    groups = {}
    for path in sorted(glob.glob(os.path.join(argv[1], "*.json"))):
        m = re.fullmatch(r"(.+)_r(\d+)\.json", os.path.basename(path))
        if not m:
            continue
        with open(path, encoding="utf-8") as f:
            try:
                doc = json.load(f)
            except json.JSONDecodeError as e:
                print(f"summarize.py: {path}: {e}", file=sys.stderr)
                return 2
        groups.setdefault(m.group(1), []).append((int(m.group(2)), doc))
    for name, runs in groups.items():
        runs.sort(key=lambda r: r[0])
        p = runs[0][1]["params"]
        head = (f"#### {p['library']} {p['version']}: N=2^{p['log_n']}, depth {p['depth']}, "
                f"dnum {p['dnum']}, {p['special_primes']} special prime(s), logQP {p['log_qp']}, "
                f"{p['security']}, {p['threads']} thread, {p['reps']} reps per run")
        print(head)
        print()
        if p.get("skipped"):
            print(f"skipped: {p['skipped']}\n")
            continue
        machines = [r[1]["params"].get("machine", {}) for r in runs]
        cols = " | ".join(f"run {r[0]}" for r in runs)
        print(f"| op | lowest run median ms | {cols} | spread | fastest single call |")
        print("|---|---:|" + "---:|" * len(runs) + "---:|---:|")
        for op in OPS:
            meds = [r[1]["ops_ms"].get(op) for r in runs]
            if any(v is None for v in meds):
                print(f"| {op} | - |" + " - |" * len(runs) + " - | - |")
                continue
            lo = min(meds)
            fastest = min(r[1].get("ops_min_ms", {}).get(op) or float("inf") for r in runs)
            print(f"| {op} | **{lo:.3f}** | " + " | ".join(f"{v:.3f}" for v in meds)
                  + f" | {max(meds) / lo:.2f}× | {fastest:.3f} |")
        busy = " | ".join(f"{m.get('others_cpus', '?')}" for m in machines)
        load = " | ".join(f"{m.get('loadavg_1m', '?')}" for m in machines)
        print(f"| *CPUs busy with other work* | | {busy} | | |")
        print(f"| *load average at start* | | {load} | | |")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
