#!/usr/bin/env bash
# Runs every test: installs the real peers (Traefik, Prometheus, ...) when missing, then the
# Rust test suite and lints. This is what .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-peers.sh
export PATH="$PWD/.venv-peers/bin:$PATH"
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --all-targets 2>&1
# The benchmark scripts in quick mode (seconds each; figures meaningless): they must not rot.
bash bench/run.sh --quick
