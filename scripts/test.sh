#!/usr/bin/env bash
# Runs every check and test: the OpenCode plugin's type check, lint and
# tests, and a check that its checked-in bundle is what the sources build
# to; then formatting, clippy, unit tests, and the black-box tests against
# a real `opencode serve` (installed into .tools/ on first use), the
# compose project on a real Docker engine (scripts/docker-engine.sh; set
# PB_COMPOSE_E2E=skip on a machine without root), and a smoke run of the
# benchmark harness. Extra arguments go to the Rust test runner.
set -euo pipefail
cd "$(dirname "$0")/.."
# A one-off build gains nothing from incremental state, which is the largest
# part of target/ (see the dev profile in Cargo.toml).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

scripts/install-tools.sh
# tests/compose.rs validates docker-compose.yml with Debian's docker-compose,
# which parses it without a Docker engine.
if ! command -v docker-compose >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "test.sh: installing docker-compose from Debian (to validate docker-compose.yml)" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >&2
  else
    echo "test.sh: docker-compose is needed (Debian: apt-get install docker-compose)" >&2
    exit 1
  fi
fi

# tests/compose_engine.rs brings docker-compose.yml up on a real Docker
# engine, which this script installs and starts (as root; CI runs as root).
if [ "${PB_COMPOSE_E2E:-}" != skip ]; then
  scripts/docker-engine.sh
fi

(
  cd opencode-plugin
  npm run --silent typecheck
  npm run --silent lint
  npm test --silent
  npm run --silent bundle:check
)

node scripts/actionlint.mjs
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings

if cargo nextest --version >/dev/null 2>&1; then
  # Library, binary and integration tests; the benchmark is its own command
  # (cargo bench --bench core), smoke-run at the end.
  cargo nextest run --lib --bins --tests --locked --no-fail-fast "$@"
else
  echo "test.sh: cargo-nextest not found, using cargo test" >&2
  cargo test --lib --bins --tests --locked --no-fail-fast "$@"
fi

# A smoke run of the benchmark harness (tiny sizes, nothing about time
# asserted), so it cannot rot; its report is thrown away.
PB_BENCH_SMOKE=1 cargo test --bench core --locked >/dev/null
