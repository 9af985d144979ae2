#!/usr/bin/env bash
# Compile time and peak memory of `polyhe compile` on the given models, for one or two polyhe binaries
# side by side (old vs new), as one markdown table: model | binary | compile s | peak RSS GB | outcome |
# and, from OUT/ckks_report.json, depth, instructions, rotations, key switches, diagonals, bootstraps.
#
# Usage: scripts/compile-bench.sh [--old BIN] [--new BIN|none] [--build] [--timeout SEC] [--mem-limit GB]
#                                 [--keep DIR] [--extra "FLAGS"] MODEL...
#   MODEL      minilm      models/pretrained/minilm/model.onnx (models/make_minilm.sh), calib/ token ids + mask,
#                          --dim batch_size=1 --dim sequence_length=16 --client-tail auto
#              bert-base   models/pretrained/bert_base_shape/model.onnx (models/make_bert_base.sh),
#                          --dim batch_size=1 --client-tail auto
#              encoder, vit, sigma_encoder, encoder_decomposed, bert_tiny
#                          the shipped models/NAME/ with its calib/, --dim batch_size=1 --client-tail auto
#                          (bert_tiny also --dim sequence_length=12)
#              PATH.onnx   any model; --calib NAME=FILE for every calib/*.npy beside it, --dim batch_size=1
#   --old BIN        a second binary, run before the new one on each model (e.g. a worktree of an older commit)
#   --new BIN|none   the binary under test (default target/release/polyhe; `none`: only --old)
#   --build          `cargo build --release -p polyhe` first (the default new binary only)
#   --timeout SEC    wall-clock limit per compile (default 900): the run is killed and reported as timeout
#   --mem-limit GB   resident-memory cap per compile (default 20): the run is killed when its RSS passes it and
#                    reported as "killed at N GB"; the address space is also limited (prlimit-style, cap + 4 GB)
#                    as a backstop against a blow-up faster than the 0.1 s RSS sampling
#   --keep DIR       keep each run's OUT dir and log in DIR/<model>-<binary>/ (default: temp dirs, removed)
#   --extra "FLAGS"  more flags for every compile (e.g. "--no-egraph")
# Runs are sequential; each writes to its own OUT dir. Peak RSS is the kernel's ru_maxrss of the compile.
set -euo pipefail
cd "$(dirname "$0")/.."

old="" new="target/release/polyhe" build=0 timeout=900 mem=20 keep="" extra=""
models=()
while [ $# -gt 0 ]; do
  case "$1" in
    --old) old=$2; shift 2 ;;
    --new) new=$2; shift 2 ;;
    --build) build=1; shift ;;
    --timeout) timeout=$2; shift 2 ;;
    --mem-limit) mem=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    --extra) extra=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    *) models+=("$1"); shift ;;
  esac
done
[ ${#models[@]} -eq 0 ] && { echo "no model given (see --help)" >&2; exit 2; }
[ "$build" = 1 ] && [ "$new" = target/release/polyhe ] && cargo build --release -q -p polyhe

bins=() labels=()
if [ -n "$old" ]; then bins+=("$old"); labels+=("old"); fi
if [ "$new" != none ]; then bins+=("$new"); labels+=("new"); fi
[ ${#bins[@]} -eq 0 ] && { echo "no binary: give --old or --new" >&2; exit 2; }
for b in "${bins[@]}"; do [ -x "$b" ] || { echo "$b: not an executable (build it, or pass --old/--new)" >&2; exit 2; }; done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Runs a command under a wall-clock limit and an RSS cap; prints "seconds peak_gb outcome" on one line.
cat > "$work/measure.py" <<'PY'
import os, resource, signal, subprocess, sys, time
timeout, cap_gb, log = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
cmd = sys.argv[4:]
cap = cap_gb * 2**30
page = os.sysconf("SC_PAGE_SIZE")

def limit():
    os.setsid()
    backstop = int((cap_gb + 4) * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (backstop, backstop))

def rss(pid):
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * page
    except (OSError, IndexError, ValueError):
        return 0

with open(log, "wb") as out:
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, preexec_fn=limit)
    peak, why = 0, None
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        r = rss(p.pid)
        peak = max(peak, r)
        el = time.monotonic() - t0
        if why is None and r > cap:
            why = f"killed at {r / 2**30:.1f} GB (cap {cap_gb:g} GB) after {el:.0f} s"
        elif why is None and el > timeout:
            why = f"timeout after {timeout:g} s"
        if why is not None:
            os.killpg(p.pid, signal.SIGKILL)
            pid, status, ru = os.wait4(p.pid, 0)
            break
        time.sleep(0.1)
    el = time.monotonic() - t0
peak = max(peak, ru.ru_maxrss * 1024)
if why is None:
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        why = "ok"
    else:
        text = open(log, errors="replace").read().splitlines()
        err = [l for l in text if l.lower().startswith("error") or "memory allocation of" in l or "panicked" in l]
        first = (err[:1] or [l for l in text if l.strip()][-1:] or [""])[0].strip()
        if "memory allocation of" in first:
            first += f" (address-space backstop {cap_gb + 4:g} GB)"
        code = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}"
        why = f"error ({code}): {first}".replace("|", "\\|")[:200]
print(f"{el:.1f} {peak / 2**30:.2f} {why}")
PY

# Reads OUT/ckks_report.json (fields missing in a binary's report print as —).
cat > "$work/report.py" <<'PY'
import json, os, sys
path = sys.argv[1]
if not os.path.exists(path):
    print("— | — | — | — | — | — | —"); sys.exit()
r = json.load(open(path))
g = lambda k: "—" if r.get(k) is None else str(r[k])
b = r.get("bootstrap")
boots = g("bootstraps")
if b and b.get("cuts") is not None and r.get("bootstraps"):
    boots += f" ({len(b['cuts'])} rounds)"
elif b and not r.get("bootstraps") and b.get("cuts"):
    boots = f"needs {len(b['cuts'])} rounds"
n = f"2^{r['log_n']}" if r.get("log_n") else "—"
print(" | ".join([n, g("depth"), g("instructions"), g("rotations"), g("key_switches"), g("diagonals"), boots]))
PY

# Fills the global array args with the compile arguments of model $1.
model_args() {
  local m=$1 dir onnx f n
  args=()
  case "$m" in
    minilm) dir=models/pretrained/minilm; onnx=$dir/model.onnx
            args=(--dim batch_size=1 --dim sequence_length=16 --client-tail auto)
            [ -f "$onnx" ] || { echo "$onnx missing: run models/make_minilm.sh" >&2; return 1; } ;;
    bert-base|bert_base|bert_base_shape)
            dir=models/pretrained/bert_base_shape; onnx=$dir/model.onnx
            args=(--dim batch_size=1 --client-tail auto)
            [ -f "$onnx" ] || { echo "$onnx missing: run models/make_bert_base.sh" >&2; return 1; } ;;
    *.onnx) dir=$(dirname "$m"); onnx=$m; args=(--dim batch_size=1) ;;
    *)      dir=models/$m; onnx=$dir/model.onnx
            [ -f "$onnx" ] || { echo "unknown model $m (see --help)" >&2; return 1; }
            args=(--dim batch_size=1 --client-tail auto)
            [ "$m" = bert_tiny ] && args+=(--dim sequence_length=12) ;;
  esac
  for f in "$dir"/calib/*.npy; do
    [ -f "$f" ] || continue
    n=$(basename "$f" .npy); args+=(--calib "$n=$f")
  done
  args=("$onnx" "${args[@]}")
}

echo "| model | binary | compile s | peak RSS GB | outcome | N | depth | instructions | rotations | key switches | diagonals | bootstraps |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for m in "${models[@]}"; do
  if ! model_args "$m" 2> "$work/why"; then
    echo "| $m | — | — | — | not run: $(cat "$work/why") | — | — | — | — | — | — | — |"; continue
  fi
  for i in "${!bins[@]}"; do
    bin=${bins[$i]} label=${labels[$i]}
    run=$work/$(basename "$m" .onnx)-$label
    mkdir -p "$run"
    # shellcheck disable=SC2086
    read -r secs gb outcome < <(python3 "$work/measure.py" "$timeout" "$mem" "$run/compile.log" \
      "$bin" compile "${args[@]}" -o "$run/out" $extra)
    if [ "$outcome" = ok ] && [ ! -f "$run/out/program.bin" ]; then
      outcome="ok (no program.bin: $(grep -m1 -o 'no parameter set.*' "$run/compile.log" || echo 'see the log'))"
    fi
    row=$(python3 "$work/report.py" "$run/out/ckks_report.json")
    echo "| $m | $label \`$bin\` | $secs | $gb | $outcome | $row |"
    if [ -n "$keep" ]; then mkdir -p "$keep" && cp -r "$run" "$keep/"; fi
  done
done
echo
echo "command: scripts/compile-bench.sh${old:+ --old $old} --new $new --timeout $timeout --mem-limit $mem${extra:+ --extra \"$extra\"} ${models[*]}"
