#!/usr/bin/env bash
# The kill -9 soak at full size (tests/soak.rs): 20 chats, 8 messages each,
# the bridge killed at a random moment every round. The test suite runs it
# at 4 chats and 3 rounds. Override with PB_SOAK_CHATS, PB_SOAK_ROUNDS;
# replay a run with the PB_SOAK_SEED it printed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-tools.sh
export PB_SOAK_CHATS="${PB_SOAK_CHATS:-20}" PB_SOAK_ROUNDS="${PB_SOAK_ROUNDS:-8}"
cargo nextest run --test soak --no-capture "$@"
