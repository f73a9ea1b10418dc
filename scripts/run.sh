#!/usr/bin/env bash
# Runs PocketBrain without Docker: installs the pinned OpenCode into .tools/
# if needed (and nothing the tests need; it says what is missing, such as
# Node.js 20+, instead of failing halfway) and starts the bridge, which starts `opencode serve` itself
# unless PB_OPENCODE_URL is set. Settings come from .env (see .env.example) and
# the environment; OpenCode's config from opencode.json (see
# opencode.json.example). Extra arguments go to `pocketbrain serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null; then
  echo "run.sh: cargo is required to build the bridge (https://rustup.rs); install it and run again" >&2
  exit 1
fi
# What running needs only: the pinned OpenCode (not the test tools).
scripts/install-tools.sh --run
# KEY=VALUE lines of a settings file; a variable already in the
# environment wins (so `PB_CHANNEL=fake scripts/run.sh` works).
load_env() {
  local line key
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in '' | '#'*) continue ;; esac
    key="${line%%=*}"
    [ -n "${!key+x}" ] && continue
    eval "export $line"
  done <"$1"
}
for f in .env pocketbrain.env; do
  if [ -f "$f" ]; then load_env "$f"; fi
done
# State lives outside the repository: a workspace inside this git checkout
# would make OpenCode also load the repository's own .opencode/ shim.
state="${XDG_DATA_HOME:-$HOME/.local/share}/pocketbrain"
export PB_DATA_DIR="${PB_DATA_DIR:-$state/data}"
export PB_WORKSPACE="${PB_WORKSPACE:-$state/workspace}"
if [ -z "${OPENCODE_CONFIG:-}" ] && [ -f opencode.json ]; then
  export OPENCODE_CONFIG="$PWD/opencode.json"
fi
exec cargo run --release --locked -- serve "$@"
