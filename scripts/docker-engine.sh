#!/usr/bin/env bash
# A Docker engine for tests/compose_engine.rs, from Debian's packages alone:
# installs docker.io, docker-compose (v1), mmdebstrap and busybox-static
# when missing, starts dockerd when none answers, and makes the base image
# the Dockerfiles name (debian:bookworm-slim) with mmdebstrap from this
# machine's own apt sources, since no image registry may be reachable.
# Needs root (CI runs as root). Idempotent: a second run only checks.
set -euo pipefail

log() { echo "docker-engine: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
  log "needs root to install and start a Docker engine; run as root, or set PB_COMPOSE_E2E=skip to leave tests/compose_engine.rs out"
  exit 1
fi

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
[ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx wget || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]} from Debian"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd (log: /var/log/pocketbrain-dockerd.log)"
  nohup dockerd >/var/log/pocketbrain-dockerd.log 2>&1 &
  for _ in $(seq 1 120); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || { log "dockerd did not come up:"; tail -20 /var/log/pocketbrain-dockerd.log >&2; exit 1; }
fi

if ! docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
  # The mirror this machine's apt uses (deb822 or one-line sources).
  mirror=$(
    { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}';
      grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}'; } \
      | grep -v security | grep -i debian | head -1
  )
  mirror="${mirror:-http://deb.debian.org/debian}"
  log "building debian:bookworm-slim with mmdebstrap from $mirror"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mmdebstrap --quiet --variant=minbase --include=ca-certificates,passwd \
    bookworm "$tmp/rootfs.tar" "deb $mirror bookworm main" >&2
  docker import "$tmp/rootfs.tar" debian:bookworm-slim >/dev/null
fi
log "ready: $(docker version --format 'engine {{.Server.Version}}')"
