#!/usr/bin/env bash
# Installs what the tests (and a local run) need into the git-ignored .tools/
# folder: OpenCode, pinned. Idempotent: does nothing when the pin is present.
set -euo pipefail
OPENCODE_VERSION=1.18.33
root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools"
bin="$tools/node_modules/.bin/opencode"

if [ -x "$bin" ] && [ "$("$bin" --version 2>/dev/null)" = "$OPENCODE_VERSION" ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "install-tools: npm is required (Node.js 20+)" >&2; exit 1; }
mkdir -p "$tools"
echo "install-tools: installing opencode-ai@$OPENCODE_VERSION into $tools" >&2
npm install --prefix "$tools" --no-audit --no-fund --loglevel=error "opencode-ai@$OPENCODE_VERSION" >&2
got=$("$bin" --version)
[ "$got" = "$OPENCODE_VERSION" ] || { echo "install-tools: expected opencode $OPENCODE_VERSION, got $got" >&2; exit 1; }
