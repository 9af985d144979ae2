#!/usr/bin/env python3
"""Side-by-side Markdown table of polyhe vs OpenFHE vs SEAL CKKS timings.

    python3 table.py POLYHE.json OPENFHE.json SEAL.json

Each file holds one `{"params": {...}, "ops_ms": {op: median ms | null}}` object, as printed by
`polyhe bench runtime --json`, openfhe_bench.py --json and seal_bench.py --json. A file that is
missing or empty, or whose params carry "skipped", makes that column "-" (the reason is listed
under the table). Ratios are polyhe ms / peer ms (below 1 means polyhe is faster); polyhe/best
divides by the faster peer that has the op. Standard library only, so any python3 runs it.
"""

import json
import os
import sys

OPS = ("encode_encrypt", "decrypt_decode", "add", "mul_plain", "mul_relin", "rescale", "rotate",
       "hoisted_rotate")
LABELS = {
    "encode_encrypt": "encode+encrypt",
    "decrypt_decode": "decrypt+decode",
    "add": "add",
    "mul_plain": "mul ct×pt",
    "mul_relin": "mul+relin",
    "rescale": "rescale",
    "rotate": "rotate",
    "hoisted_rotate": "hoisted rotate (per rot.)",
}
# The target: every op at most this fraction of the faster peer's time.
TARGET = 0.8


class TableError(Exception):
    pass


def load(path, name):
    """Returns (ops {op: ms|None} or None, params dict or {}, note or None)."""
    if not path or path == "-" or not os.path.exists(path) or os.path.getsize(path) == 0:
        return None, {}, f"{name}: no result ({path or 'not given'})"
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise TableError(f"{name}: cannot read {path}: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("ops_ms"), dict):
        raise TableError(f"{name}: {path} has no \"ops_ms\" object")
    params = doc.get("params") if isinstance(doc.get("params"), dict) else {}
    if params.get("skipped"):
        return None, params, f"{name}: skipped: {params['skipped']}"
    ops = {}
    for op in OPS:
        v = doc["ops_ms"].get(op)
        if v is not None and not (isinstance(v, (int, float)) and v > 0):
            raise TableError(f"{name}: ops_ms.{op} = {v!r} is not a positive number or null")
        ops[op] = float(v) if v is not None else None
    return ops, params, None


def fmt_ms(v):
    if v is None:
        return "-"
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.1f}"


def ratio(a, b):
    if a is None or b is None:
        return None
    return a / b


def fmt_ratio(r, mark=False):
    if r is None:
        return "-"
    s = f"{r:.2f}"
    return f"**{s}**" if mark and r <= TARGET else s


def describe(name, params):
    if not params or params.get("skipped"):
        return None
    keys = ("version", "log_n", "depth", "dnum", "special_primes", "log_qp", "security", "threads",
            "reps", "statistic")
    bits = [f"{k}={params[k]}" for k in keys if k in params]
    machine = params.get("machine") if isinstance(params.get("machine"), dict) else {}
    for key in ("others_cpus", "loadavg_1m"):
        if key in machine:
            bits.append(f"{key}={machine[key]}")
    return f"{name}: " + ", ".join(bits)


def render(polyhe, openfhe, seal):
    (p_ops, p_par, p_note), (o_ops, o_par, o_note), (s_ops, s_par, s_note) = polyhe, openfhe, seal
    lines = [
        "| op | polyhe ms | OpenFHE ms | SEAL ms | polyhe/OpenFHE | polyhe/SEAL | polyhe/best |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for op in OPS:
        p = p_ops.get(op) if p_ops else None
        o = o_ops.get(op) if o_ops else None
        s = s_ops.get(op) if s_ops else None
        peers = [v for v in (o, s) if v is not None]
        best = min(peers) if peers else None
        lines.append(f"| {LABELS[op]} | {fmt_ms(p)} | {fmt_ms(o)} | {fmt_ms(s)} | "
                     f"{fmt_ratio(ratio(p, o))} | {fmt_ratio(ratio(p, s))} | "
                     f"{fmt_ratio(ratio(p, best), mark=True)} |")
    lines.append("")
    lines.append(f"Median ms per op; ratios < 1 mean polyhe is faster; **bold** polyhe/best meets the "
                 f"target (≤ {TARGET}).")
    for key in ("log_n", "depth"):
        seen = {n: par[key] for n, par in (("polyhe", p_par), ("OpenFHE", o_par), ("SEAL", s_par))
                if key in par}
        if len(set(seen.values())) > 1:
            lines.append(f"- WARNING: {key} differs between columns: {seen}")
    for note in (p_note, o_note, s_note):
        if note:
            lines.append(f"- {note}")
    for name, par in (("polyhe", p_par), ("OpenFHE", o_par), ("SEAL", s_par)):
        d = describe(name, par)
        if d:
            lines.append(f"- {d}")
    return "\n".join(lines)


def main(argv):
    if len(argv) != 4:
        print("usage: table.py POLYHE.json OPENFHE.json SEAL.json  (use '-' for a missing one)",
              file=sys.stderr)
        return 2
    try:
        cols = [load(argv[1], "polyhe"), load(argv[2], "OpenFHE"), load(argv[3], "SEAL")]
    except TableError as e:
        print(f"table.py: {e}", file=sys.stderr)
        return 2
    print(render(*cols))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
