#!/usr/bin/env bash
# Installs everything and runs every check and test: formatting and lints (Rust and Python), the
# Rust unit tests, the stub of the compiled module against the binary, then the Python suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
bash scripts/install.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
for tool in fmt clippy; do
  cargo "$tool" --version >/dev/null 2>&1 || { echo "test.sh: cargo $tool is missing (rustup component add ${tool/fmt/rustfmt})" >&2; exit 1; }
done
cargo fmt --check
cargo clippy --quiet --all-targets -- -D warnings
cargo clippy --quiet --all-targets --features python -- -D warnings
cargo test --release
"$PY" -m ruff check python tests benches
"$PY" -m ruff format --check python tests benches
"$PY" -m mypy.stubtest seqdistill._core
set +e
"$PY" -m pytest -q "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "test.sh: pytest collected no tests — that is a failure" >&2
  exit 1
fi
exit "$rc"
