#!/usr/bin/env bash
# Runs every check and test: the OpenCode plugin's type check, lint and
# tests; then formatting, clippy, unit tests, and the black-box tests against
# a real `opencode serve` (installed into .tools/ on first use). Extra
# arguments go to the Rust test runner.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-tools.sh

(
  cd opencode-plugin
  npm run --silent typecheck
  npm run --silent lint
  npm test --silent
)

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings

if cargo nextest --version >/dev/null 2>&1; then
  # Library, binary and integration tests; the benchmark is its own command
  # (cargo bench --bench core) and is compiled by clippy above.
  cargo nextest run --lib --bins --tests --locked --no-fail-fast "$@"
else
  echo "test.sh: cargo-nextest not found, using cargo test" >&2
  cargo test --lib --bins --tests --locked --no-fail-fast "$@"
fi
