#!/usr/bin/env bash
# Repeats the peer benchmarks over a parameter matrix, round-robin, to make RESULTS.md.
#
#   bench/peers/repeat.sh OUTDIR [ROUNDS=3] [REPS=20] [MAX_LOAD=0.6] [MAX_WAIT_S=300]
#
# Matrix (depth 5): OpenFHE N=2^14, 2^15, 2^16 with its default dnum, and 2^14, 2^16 with dnum 6
# (one digit per Q prime, one special prime: polyhe's chain); SEAL N=2^14, 2^15.
# Round-robin spreads slow periods over all configurations instead of one. Before each run it
# waits (up to MAX_WAIT_S) for the 1-minute load average to drop below MAX_LOAD, because this
# machine's 2 cores are shared with other users' builds; each JSON records how busy the machine
# actually was during the run (params.machine). Summarize with summarize.py OUTDIR.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:?usage: repeat.sh OUTDIR [ROUNDS] [REPS] [MAX_LOAD] [MAX_WAIT_S]}"
rounds="${2:-3}"
reps="${3:-20}"
max_load="${4:-0.6}"
max_wait="${5:-300}"
mkdir -p "$out"
"$here/setup.sh" >&2

wait_quiet() {
    local waited=0
    while awk -v m="$max_load" '{exit !($1 >= m)}' /proc/loadavg && ((waited < max_wait)); do
        sleep 10
        waited=$((waited + 10))
    done
}

configs=("openfhe 14 0" "openfhe 14 6" "openfhe 15 0" "openfhe 16 0" "openfhe 16 6" "seal 14" "seal 15")
# CONFIGS="openfhe 14 0;seal 14" runs a subset; FIRST_ROUND=4 numbers the rounds from 4, so a
# later pass can add runs to the same OUTDIR.
if [[ -n "${CONFIGS:-}" ]]; then IFS=';' read -r -a configs <<<"$CONFIGS"; fi
first="${FIRST_ROUND:-1}"
for ((round = first; round < first + rounds; round++)); do
    for cfg in "${configs[@]}"; do
        read -r lib log_n dnum <<<"$cfg"
        wait_quiet
        if [[ "$lib" == openfhe ]]; then
            f="$out/openfhe_n${log_n}_dnum${dnum}_r${round}.json"
            OMP_NUM_THREADS=1 "$here/.venv-openfhe/bin/python" "$here/openfhe_bench.py" \
                --log-n "$log_n" --depth 5 --reps "$reps" --dnum "$dnum" --threads 1 --json >"$f"
        else
            f="$out/seal_n${log_n}_r${round}.json"
            "$here/.venv-seal/bin/python" "$here/seal_bench.py" \
                --log-n "$log_n" --depth 5 --reps "$reps" --json >"$f"
        fi
        echo "repeat.sh: $(date -u +%FT%TZ) round $round $lib N=2^$log_n ${dnum:+dnum=$dnum} -> $f" \
            "(load $(cut -d' ' -f1 /proc/loadavg))" >&2
    done
done
