#!/usr/bin/env bash
# Prints one row per shipped model for the README's encrypted-execution table: ring degree N, levels
# (chain length; with bootstrapping "L + B": compute levels + the bootstrapping levels above them),
# depth, bootstraps (refreshed ciphertexts, in rounds), rotations, Galois keys, evaluation-key bytes,
# and — when the program's keys fit in memory — keygen/encrypt/eval/decrypt times, the error vs poly
# mode and the argmax vs onnxruntime (first sample, batch 1).
#
# Usage: scripts/encrypted-table.sh [MODEL...]          (default: every shipped model)
# Environment: EXTRA="--security none --log-n 13" passes flags to compile and run (test rings; the
#              table then says security none), e.g. EXTRA="--security none --log-n 13 --client-tail auto
#              --bootstrap-levels 20" for the ViT with bootstraps; RUN=0 skips the encrypted runs;
#              MEM_FRACTION (default 0.6) of the available memory may hold evaluation keys;
#              LOGS=DIR keeps the compile and run logs there.
set -euo pipefail
cd "$(dirname "$0")/.."
models=("$@")
[ ${#models[@]} -eq 0 ] && models=(encoder sigma_encoder vit bert_tiny)
EXTRA=${EXTRA:-}
RUN=${RUN:-1}
MEM_FRACTION=${MEM_FRACTION:-0.6}
cargo build --release -q -p polyhe
bin=./target/release/polyhe
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
LOGS=${LOGS:-}
avail_kb=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)

# First sample of every .npy in DIR (batch 1), written to OUTDIR with the same names.
first_sample() {
  python3 - "$1" "$2" <<'PY'
import ast, os, struct, sys
src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst, exist_ok=True)
for f in sorted(os.listdir(src)):
    if not f.endswith('.npy'):
        continue
    b = open(os.path.join(src, f), 'rb').read()
    hl, off = (struct.unpack('<H', b[8:10])[0], 10) if b[6] == 1 else (struct.unpack('<I', b[8:12])[0], 12)
    h = ast.literal_eval(b[off:off + hl].decode())
    per = 1
    for s in h['shape'][1:]:
        per *= s
    size = int(h['descr'][2:])
    h['shape'] = (1,) + tuple(h['shape'][1:])
    hs = repr(h).encode()
    hs += b' ' * (64 - (10 + len(hs) + 1) % 64) + b'\n'
    open(os.path.join(dst, f), 'wb').write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(hs)) + hs + b[off + hl:off + hl + per * size])
PY
}

printf '| model | N | levels | depth | scale | dnum | bootstraps | rotations (naive) | Galois keys | eval keys | keygen | encrypt | eval | decrypt | error vs poly | argmax vs ORT | security |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n'
for m in "${models[@]}"; do
  dir=models/$m
  first_sample "$dir/inputs" "$work/$m/in"
  first_sample "$dir/expected" "$work/$m/exp"
  calib=(); inputs=(); compare=()
  for f in "$dir"/calib/*.npy; do n=$(basename "$f" .npy); calib+=(--calib "$n=$f"); done
  for f in "$work/$m/in"/*.npy; do n=$(basename "$f" .npy); inputs+=(--input "$n=$f"); done
  for f in "$work/$m/exp"/*.npy; do n=$(basename "$f" .npy); compare+=(--compare "$n=$f"); done
  # shellcheck disable=SC2086
  $bin compile "$dir/model.onnx" "${calib[@]}" "${inputs[@]}" -o "$work/$m/out" $EXTRA > "$work/$m/compile.log" 2>&1
  row=$(python3 - "$work/$m/out/ckks_report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
b = r.get('bootstrap')
n = f"2^{r['log_n']}" if r.get('log_n') else "2^16 (with bootstrapping)"
levels = len(r['q_bits']) - 1 if r.get('q_bits') else (b['max_levels'] if b else '')
if b and b.get('bootstrap_levels') and r.get('q_bits'):
    levels = f"{b['max_levels']} + {b['bootstrap_levels']}"
boots = f"{r['bootstraps']} ({len(b['cuts'])} rounds)" if b and r.get('bootstraps') else (f"needs {len(b['cuts'])} rounds" if b else 0)
keys = f"{r['eval_key_bytes'] / 2**30:.2f} GiB" if r.get('eval_key_bytes') else "—"
print(f"{n}|{levels}|{r['depth']}|{('2^' + str(r['log_scale'])) if r.get('log_scale') else '—'}|{r.get('dnum') or '—'}|{boots}|{r['rotations']} ({r['naive_rotations']})|{r['rotation_keys']}|{keys}|{r.get('eval_key_bytes') or 0}|{r['security']}")
PY
)
  IFS='|' read -r n levels depth scale dnum boots rots gkeys keys keybytes sec <<< "$row"
  times="— | — | — | —"; err="—"; argmax="—"
  if [ ! -f "$work/$m/out/program.bin" ]; then
    err="no parameter set holds the circuit, even with bootstrapping"
  elif [ "$RUN" = 0 ]; then
    err="not run (RUN=0)"
  elif [ "$(awk -v b="$keybytes" -v a="$avail_kb" -v f="$MEM_FRACTION" 'BEGIN { print (b > a * 1024 * f) ? 1 : 0 }')" = 1 ]; then
    err="not run: keys exceed ${MEM_FRACTION} of available memory"
  else
    # shellcheck disable=SC2086
    if $bin run "$dir/model.onnx" --mode encrypted "${calib[@]}" "${inputs[@]}" "${compare[@]}" $EXTRA > "$work/$m/run.out" 2> "$work/$m/run.log"; then
      times=$(sed -n 's/.*phases: context [0-9.]* s, keygen \([0-9.]*\) s ([0-9]* rotation keys), encrypt \([0-9.]*\) s, eval \([0-9.]*\) s, decrypt \([0-9.]*\) s.*/\1 s | \2 s | \3 s | \4 s/p' "$work/$m/run.log" | tr -d '\r')
      err=$(sed -n 's/.*max relative error vs poly mode = \([0-9.e+-]*\).*/\1/p' "$work/$m/run.log" | sort -g | tail -1)
      argmax=$(sed -n 's/.*argmax agrees on \([0-9]*\/[0-9]*\) rows.*/\1/p' "$work/$m/run.out" | head -1)
    else
      err="run failed: $(tail -1 "$work/$m/run.log")"
    fi
  fi
  if [ -n "$LOGS" ]; then mkdir -p "$LOGS/$m" && cp "$work/$m"/*.log "$work/$m"/*.out "$LOGS/$m/" 2>/dev/null || true; fi
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
    "$m" "$n" "$levels" "$depth" "$scale" "$dnum" "$boots" "$rots" "$gkeys" "$keys" "$times" "$err" "$argmax" "$sec"
done
echo
echo "command: EXTRA=\"$EXTRA\" RUN=$RUN scripts/encrypted-table.sh ${models[*]}"
