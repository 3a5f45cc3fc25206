#!/usr/bin/env bash
# Runs every test: installs the real peers (Traefik, Prometheus, ...) when missing, then the
# Rust test suite and lints. This is what .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-peers.sh
export PATH="$PWD/.venv-peers/bin:$PATH"
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --all-targets 2>&1 | tee "$log"
# The benchmark scripts in quick mode (seconds each; figures meaningless): they must not rot.
bash bench/run.sh --quick
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { for (i = 2; i <= NF; i++) { if ($i == "passed;") p += $(i-1); if ($i == "failed;") f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
