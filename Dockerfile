# The PocketBrain bridge. OpenCode runs in its own container (docker-compose.yml).
# The build context is the repository root. The build stage copies exactly
# what the crate compiles in: its manifest, build script, sources and
# declared targets, the skills it ships (skills/), and the OpenCode plugin it
# embeds from opencode-plugin/:
# the checked-in bundle and lock, so the build needs no npm
# (tests/docker_context.rs checks this list against the crate).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY benches ./benches
COPY skills ./skills
COPY opencode-plugin/bundle/pocketbrain.js ./opencode-plugin/bundle/
COPY opencode-plugin/runtime/package-lock.json ./opencode-plugin/runtime/
RUN cargo build --release --locked --bin pocketbrain

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /data --no-create-home pocketbrain \
 && mkdir -p /data /workspace /ipc \
 && chown pocketbrain: /data /workspace /ipc
COPY --from=build /src/target/release/pocketbrain /usr/local/bin/pocketbrain
COPY scripts/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PB_DATA_DIR=/data PB_WORKSPACE=/workspace PB_IPC_DIR=/ipc PB_HTTP_ADDR=0.0.0.0:8787
VOLUME ["/data"]
EXPOSE 8787
HEALTHCHECK --interval=30s --timeout=5s CMD ["pocketbrain", "health"]
# Starts as root only to hand the mounted folders to the pocketbrain user,
# then runs the bridge as that user (scripts/docker-entrypoint.sh).
ENTRYPOINT ["docker-entrypoint.sh", "pocketbrain"]
CMD ["serve"]
