#!/usr/bin/env bash
# Builds (release) and runs the soak test (src/bin/soak.rs): calls of all four kinds with
# random cancellations, deadlines and client restarts against one Volley server, whose memory
# must stay flat after warm-up. Arguments go to the soak: `--calls N`, `--seconds S`,
# `--workers W`. The manual run is 10 million calls (`bench/soak.sh`, about 10 minutes on
# 2 cores); CI runs one minute (`bench/soak.sh --seconds 60`) on Volley's own HTTP/2 engine,
# then one on h2. VOLLEY_SOAK_SERVER_ENGINE=h2 and VOLLEY_SOAK_CLIENT_ENGINE=h2 put the
# server's or the client's connections on h2 (the engine otherwise).
set -euo pipefail
BENCH=$(cd "$(dirname "$0")" && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$BENCH/target}
echo "[soak] building (release)" >&2
cargo build --release --manifest-path "$BENCH/Cargo.toml" --target-dir "$TARGET_DIR" -q --bin soak
exec "$TARGET_DIR/release/soak" "$@"
