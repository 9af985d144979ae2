#!/usr/bin/env bash
# Build models/pretrained/minilm/ (git-ignored): set up models/.venv, then run make_minilm.py.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/setup.sh"
exec "$here/.venv/bin/python" "$here/make_minilm.py" "$@"
