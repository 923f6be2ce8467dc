#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, integration tests over loopback sockets, and
# the interop tests against Python's grpcio (installed into a virtualenv on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
VOLLEY_PYTHON="$(scripts/python-env.sh)"
export VOLLEY_PYTHON
cargo test --workspace -- --include-ignored
