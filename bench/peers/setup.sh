#!/usr/bin/env bash
# Creates the two peer-benchmark virtualenvs (idempotent; rerun any time).
#   .venv-openfhe : CPython 3.10 + the `openfhe` wheel (its extension module is built for 3.10 only)
#   .venv-seal    : CPython 3.11 + `tenseal` (SEAL; low-level bindings in tenseal.sealapi)
# Versions are pinned so that numbers recorded in RESULTS.md can be reproduced.
# Override interpreters with PY310=/path/python3.10 PY311=/path/python3.11.
set -euo pipefail

# numpy is a dependency of both; pinned to what the recorded runs used.
OPENFHE_PKGS=(openfhe==1.6.1.0.22.4 numpy==2.2.6)
SEAL_PKGS=(tenseal==0.3.18 numpy==2.4.6)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

find_py310() {
    if [[ -n "${PY310:-}" ]]; then echo "$PY310"; return; fi
    if command -v pyenv >/dev/null 2>&1; then
        local cand
        cand="$(pyenv root)/versions/3.10.13/bin/python"
        if [[ -x "$cand" ]]; then echo "$cand"; return; fi
        # Any 3.10.x that pyenv has.
        for cand in "$(pyenv root)"/versions/3.10.*/bin/python; do
            if [[ -x "$cand" ]]; then echo "$cand"; return; fi
        done
    fi
    if command -v python3.10 >/dev/null 2>&1; then command -v python3.10; return; fi
    echo "setup.sh: no CPython 3.10 found (the openfhe wheel needs it); set PY310=..." >&2
    return 1
}

find_py311() {
    if [[ -n "${PY311:-}" ]]; then echo "$PY311"; return; fi
    if command -v python3.11 >/dev/null 2>&1; then command -v python3.11; return; fi
    echo "setup.sh: no CPython 3.11 found (tenseal wheels need <=3.11 here); set PY311=..." >&2
    return 1
}

# pins_ok PYTHON PKG==VER...: true when every pinned version is installed in that interpreter.
pins_ok() {
    local py="$1"; shift
    "$py" - "$@" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    if version(name) != want:
        sys.exit(1)
PY
}

# make_venv DIR PYTHON IMPORT_CHECK PKG==VER...
make_venv() {
    local dir="$1" py="$2" check="$3"; shift 3
    if [[ -x "$dir/bin/python" ]] && pins_ok "$dir/bin/python" "$@" \
        && "$dir/bin/python" -c "$check" >/dev/null 2>&1; then
        echo "setup.sh: $dir ready ($*)"
        return
    fi
    if [[ ! -x "$dir/bin/python" ]]; then
        echo "setup.sh: creating $dir with $("$py" --version 2>&1)"
        "$py" -m venv "$dir"
    fi
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
    "$dir/bin/python" -c "$check"
    echo "setup.sh: $dir ready ($*)"
}

make_venv "$here/.venv-openfhe" "$(find_py310)" \
    "import openfhe, sys; assert sys.version_info[:2] == (3, 10)" "${OPENFHE_PKGS[@]}"
make_venv "$here/.venv-seal" "$(find_py311)" "import tenseal.sealapi" "${SEAL_PKGS[@]}"
