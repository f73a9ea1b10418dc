#!/usr/bin/env bash
# Runs PocketBrain without Docker: installs the pinned OpenCode into .tools/
# if needed and starts the bridge, which starts `opencode serve` itself
# unless OPENCODE_URL is set. Settings come from the environment (see
# pocketbrain.env.example); extra arguments go to `pocketbrain serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-tools.sh
if [ -f pocketbrain.env ]; then
  set -a; . ./pocketbrain.env; set +a
fi
exec cargo run --release --locked -- serve "$@"
