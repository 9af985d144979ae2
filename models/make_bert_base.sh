#!/usr/bin/env bash
# Build models/pretrained/bert_base_shape/ (git-ignored; other shapes with --layers/--seq/--hidden/--heads):
# set up models/.venv, then run make_bert_base.py.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/setup.sh"
exec "$here/.venv/bin/python" "$here/make_bert_base.py" "$@"
