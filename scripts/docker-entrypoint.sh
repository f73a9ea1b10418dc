#!/bin/sh
# The bridge image's entrypoint. Runs as root only long enough to give the
# bridge's user the folders it writes (volumes and bind mounts arrive owned
# by root), then runs the command as that user. PB_RUN_AS names the user
# (default pocketbrain); tests/compose.rs runs this script outside Docker.
set -eu
user="${PB_RUN_AS:-pocketbrain}"
if [ "$(id -u)" = 0 ]; then
  data="${PB_DATA_DIR:-/data}"
  mkdir -p "$data"
  # The data folder is the bridge's alone (an older root-run image may
  # have left files in it).
  chown -R "$user:" "$data"
  for dir in "${PB_IPC_DIR:-/ipc}" "${PB_WORKSPACE:-/workspace}"; do
    mkdir -p "$dir"
    # Only the folder itself: what OpenCode wrote inside stays OpenCode's.
    chown "$user:" "$dir"
  done
  exec setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups -- "$@"
fi
exec "$@"
