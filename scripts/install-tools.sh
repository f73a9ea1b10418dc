#!/usr/bin/env bash
# Installs what the tests (and a local run) need into the git-ignored .tools/
# folder: OpenCode, pinned. Idempotent: does nothing when the pin is present.
set -euo pipefail
OPENCODE_VERSION=1.18.33
root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools"
bin="$tools/node_modules/.bin/opencode"

plugin_ok() { [ -f "$root/.opencode/node_modules/@opencode-ai/plugin/package.json" ]; }
if [ -x "$bin" ] && [ "$("$bin" --version 2>/dev/null)" = "$OPENCODE_VERSION" ] && plugin_ok; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "install-tools: installing Node.js and npm from Debian" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >&2
  else
    echo "install-tools: npm is required (Node.js 20+); install it and run again" >&2
    exit 1
  fi
fi
if ! [ -x "$bin" ] || [ "$("$bin" --version 2>/dev/null)" != "$OPENCODE_VERSION" ]; then
  mkdir -p "$tools"
  echo "install-tools: installing opencode-ai@$OPENCODE_VERSION into $tools" >&2
  npm install --prefix "$tools" --no-audit --no-fund --loglevel=error "opencode-ai@$OPENCODE_VERSION" >&2
  got=$("$bin" --version)
  [ "$got" = "$OPENCODE_VERSION" ] || { echo "install-tools: expected opencode $OPENCODE_VERSION, got $got" >&2; exit 1; }
fi
# The plugin shim's dependencies, from its lock file (tests link them into
# each test workspace so OpenCode need not install them per test).
if ! plugin_ok; then
  echo "install-tools: installing the plugin shim's dependencies" >&2
  # npm install, not npm ci: the lock lacks other platforms' optional packages,
  # which npm ci rejects; install still follows the lock for this platform.
  npm install --prefix "$root/.opencode" --no-audit --no-fund --loglevel=error >&2
fi
