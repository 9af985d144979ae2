#!/usr/bin/env bash
# Side-by-side CKKS benchmark: polyhe, OpenFHE and SEAL at the same parameters, one after another,
# each on one thread, printed as a Markdown table (bench/peers/table.py).
#
#   bench/peers/compare.sh [--log-n 14] [--depth 5] [--reps 10] [--out DIR] [--polyhe-bin PATH]
#
# polyhe runs as `polyhe bench runtime --log-n N --depth D --threads 1 --json` from --polyhe-bin,
# else `cargo run --release -q --` (an up-to-date build is a no-op), else target/release/polyhe.
# If that command is missing or fails, its column is skipped with a message. SEAL has no 128-bit
# parameters for N=2^16, so at --log-n 16 its column says so. Raw JSON goes to --out (default: a
# fresh temporary directory), whose path is printed on stderr at the end.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

log_n=14
depth=5
reps=10
out=""
polyhe_bin=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --log-n) log_n="${2:?--log-n needs a value}"; shift 2 ;;
        --depth) depth="${2:?--depth needs a value}"; shift 2 ;;
        --reps) reps="${2:?--reps needs a value}"; shift 2 ;;
        --out) out="${2:?--out needs a value}"; shift 2 ;;
        --polyhe-bin) polyhe_bin="${2:?--polyhe-bin needs a value}"; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "compare.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
for v in "$log_n" "$depth" "$reps"; do
    [[ "$v" =~ ^[0-9]+$ ]] || { echo "compare.sh: '$v' is not a non-negative integer" >&2; exit 2; }
done

if [[ -z "$out" ]]; then out="$(mktemp -d -t polyhe-peers.XXXXXX)"; fi
mkdir -p "$out"
polyhe_json="$out/polyhe.json"
openfhe_json="$out/openfhe.json"
seal_json="$out/seal.json"
: >"$polyhe_json"; : >"$openfhe_json"; : >"$seal_json"

"$here/setup.sh" >&2

log() { echo "compare.sh: $*" >&2; }
log "N=2^$log_n depth $depth reps $reps; load average: $(cut -d' ' -f1-3 /proc/loadavg)"

# --- polyhe -----------------------------------------------------------------------------------
polyhe_cmd=()
if [[ -n "$polyhe_bin" ]]; then
    polyhe_cmd=("$polyhe_bin")
elif command -v cargo >/dev/null 2>&1; then
    polyhe_cmd=(cargo run --release -q --manifest-path "$repo/Cargo.toml" --)
elif [[ -x "$repo/target/release/polyhe" ]]; then
    polyhe_cmd=("$repo/target/release/polyhe")
fi
if [[ ${#polyhe_cmd[@]} -eq 0 ]]; then
    log "polyhe: no cargo and no target/release/polyhe; skipping polyhe"
else
    extra=()
    # Pass --reps only if this polyhe build understands it.
    if "${polyhe_cmd[@]}" bench runtime --help 2>/dev/null | grep -q -- '--reps'; then
        extra=(--reps "$reps")
    fi
    log "polyhe: ${polyhe_cmd[*]} bench runtime --log-n $log_n --depth $depth --threads 1 ${extra[*]} --json"
    if RAYON_NUM_THREADS=1 "${polyhe_cmd[@]}" bench runtime --log-n "$log_n" --depth "$depth" \
        --threads 1 "${extra[@]}" --json >"$polyhe_json" 2>"$out/polyhe.stderr" \
        && python3 -c 'import json,sys; assert isinstance(json.load(open(sys.argv[1]))["ops_ms"], dict)' \
            "$polyhe_json" 2>/dev/null; then
        log "polyhe: done"
    else
        log "polyhe: 'bench runtime --json' is not available or failed; skipping polyhe" \
            "($(grep -m1 -v '^\s*$' "$out/polyhe.stderr" 2>/dev/null || echo 'no message'))"
        : >"$polyhe_json"
    fi
fi

# --- OpenFHE ----------------------------------------------------------------------------------
log "OpenFHE: openfhe_bench.py --log-n $log_n --depth $depth --reps $reps"
if ! OMP_NUM_THREADS=1 "$here/.venv-openfhe/bin/python" "$here/openfhe_bench.py" --log-n "$log_n" \
    --depth "$depth" --reps "$reps" --threads 1 --json >"$openfhe_json"; then
    log "OpenFHE: benchmark failed; skipping its column"
    : >"$openfhe_json"
fi

# --- SEAL -------------------------------------------------------------------------------------
log "SEAL: seal_bench.py --log-n $log_n --depth $depth --reps $reps"
if ! "$here/.venv-seal/bin/python" "$here/seal_bench.py" --log-n "$log_n" --depth "$depth" \
    --reps "$reps" --json >"$seal_json"; then
    log "SEAL: benchmark failed; skipping its column"
    : >"$seal_json"
fi

log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "### CKKS ops, N=2^$log_n, depth $depth, 1 thread, median of $reps"
echo
python3 "$here/table.py" "$polyhe_json" "$openfhe_json" "$seal_json"
log "raw JSON in $out"
