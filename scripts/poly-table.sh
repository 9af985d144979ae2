#!/usr/bin/env bash
# Prints the README's polynomial-stage table: for each shipped model, the circuit's multiplicative depth
# and ct×ct multiplication count (from `polyhe compile`, batch 1) and the poly-mode output vs onnxruntime
# on the 8 sample inputs (from `polyhe run --mode poly --compare`).
# Usage: scripts/poly-table.sh [model...]   (builds the release binary first)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
bin=target/release/polyhe
models=("$@")
[ ${#models[@]} -eq 0 ] && models=(encoder encoder_decomposed sigma_encoder vit bert_tiny)
echo "| model | depth (batch 1) | ct×ct mults | approximations | output | max rel. error vs onnxruntime | argmax agreement |"
echo "|---|---|---|---|---|---|---|"
for m in "${models[@]}"; do
  d=models/$m
  calib=(); inputs=(); compare=()
  for f in "$d"/calib/*.npy; do calib+=(--calib "$(basename "$f" .npy)=$f"); done
  for f in "$d"/inputs/*.npy; do inputs+=(--input "$(basename "$f" .npy)=$f"); done
  for f in "$d"/expected/*.npy; do compare+=(--compare "$(basename "$f" .npy)=$f"); done
  out=$(mktemp -d)
  $bin compile "$d/model.onnx" "${calib[@]}" --dim batch_size=1 --dim sequence_length=12 -o "$out" > "$out/table.txt"
  depth=$(grep -oP 'total multiplicative depth: \K[0-9]+' "$out/table.txt")
  ctct=$(grep -oP 'ct×ct multiplications: \K[0-9]+' "$out/table.txt")
  napprox=$(python3 -c "import json,sys; print(len(json.load(open('$out/report.json'))['approximations']))")
  $bin run "$d/model.onnx" --mode poly "${calib[@]}" "${inputs[@]}" "${compare[@]}" 2>/dev/null > "$out/run.txt"
  while read -r line; do
    name=${line%%:*}
    err=$(echo "$line" | grep -oP '= \K\S+')
    agree=$(grep -oP "^$name: argmax agrees on \K\S+" "$out/run.txt" || echo "n/a")
    echo "| $m | $depth | $ctct | $napprox | $name | $err | $agree |"
  done < <(grep 'max relative error' "$out/run.txt")
  rm -rf "$out"
done
