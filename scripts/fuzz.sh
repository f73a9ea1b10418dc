#!/usr/bin/env bash
# The long form of the fuzz targets the test command runs briefly
# (src/fuzz.rs, and the chunker's properties in src/channel/wa_format.rs):
# PB_FUZZ_CASES cases each (default 200000; minutes on two cores).
# A failure is saved under proptest-regressions/ and replayed by every
# later run, the test command's included.
set -euo pipefail
cd "$(dirname "$0")/.."
export PB_FUZZ_CASES="${PB_FUZZ_CASES:-200000}"
export PROPTEST_CASES="$PB_FUZZ_CASES"
exec cargo test --release --lib --locked -- fuzz:: channel::wa_format::tests
