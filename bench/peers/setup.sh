#!/usr/bin/env bash
# Creates the two peer-benchmark virtualenvs (idempotent; rerun any time).
#   .venv-openfhe : CPython 3.10 + the `openfhe` wheel (its extension module is built for 3.10 only)
#   .venv-seal    : CPython 3.11 + `tenseal` (SEAL; low-level bindings in tenseal.sealapi)
# Versions are pinned so that numbers recorded in RESULTS.md can be reproduced.
# Override interpreters with PY310=/path/python3.10 PY311=/path/python3.11.
set -euo pipefail

OPENFHE_VERSION="1.6.1.0.22.4"
TENSEAL_VERSION="0.3.18"

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

# make_venv DIR PYTHON PACKAGE==VERSION IMPORT_CHECK
make_venv() {
    local dir="$1" py="$2" pkg="$3" check="$4"
    if [[ -x "$dir/bin/python" ]] && "$dir/bin/python" -c "$check" >/dev/null 2>&1; then
        echo "setup.sh: $dir ready ($pkg)"
        return
    fi
    if [[ ! -x "$dir/bin/python" ]]; then
        echo "setup.sh: creating $dir with $("$py" --version 2>&1)"
        "$py" -m venv "$dir"
    fi
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$pkg"
    "$dir/bin/python" -c "$check"
    echo "setup.sh: $dir ready ($pkg)"
}

make_venv "$here/.venv-openfhe" "$(find_py310)" "openfhe==$OPENFHE_VERSION" \
    "import openfhe, sys; assert sys.version_info[:2] == (3, 10)"
make_venv "$here/.venv-seal" "$(find_py311)" "tenseal==$TENSEAL_VERSION" \
    "import tenseal, tenseal.sealapi"
