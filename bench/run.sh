#!/usr/bin/env bash
# Builds the benchmark servers and clients (release, fat LTO), then runs every scenario and
# writes a BENCHMARKS.md report: Volley, tonic and the bare h2 floor side by side, as ratios to
# tonic from this run. It goes to the run's work directory (printed at the end), or to
# $BENCH_REPORT; `BENCH_REPORT=BENCHMARKS.md bench/run.sh` replaces the committed reference run
# (bench/README.md says when). About 10 minutes; `--quick` takes about one.
#
# Needs h2load (Debian's nghttp2-client, installed if missing), taskset and python3.
set -euo pipefail
BENCH=$(cd "$(dirname "$0")" && pwd)
if ! command -v h2load >/dev/null; then
  echo "[bench] installing nghttp2-client (h2load)" >&2
  apt-get install -y nghttp2-client >/dev/null
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$BENCH/target}
echo "[bench] building (release, lto = fat)" >&2
cargo build --release --manifest-path "$BENCH/Cargo.toml" --target-dir "$TARGET_DIR" -q
BENCH_BIN_DIR="$TARGET_DIR/release" exec python3 "$BENCH/bench.py" "$@"
