#!/usr/bin/env bash
# Runs every test: unit tests, integration tests over loopback sockets, the grpcio tests
# (Python's grpcio, installed into a virtualenv on first use), then the interop matrix against
# the official C++ and Python interop peers (built once into /var/tmp/grpc-peers).
set -euo pipefail
cd "$(dirname "$0")/.."
VOLLEY_PYTHON="$(scripts/python-env.sh)"
export VOLLEY_PYTHON
cargo test --workspace -- --include-ignored
interop/run-matrix.sh
