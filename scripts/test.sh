#!/usr/bin/env bash
# Runs every test: unit tests, integration tests over loopback sockets, the grpcio tests
# (Python's grpcio, installed into a virtualenv on first use), the etcd discovery tests (real
# etcd servers from Debian's etcd-server, installed on first use; each test starts its own;
# a Go peer on etcd's own naming packages, built from Debian's Go packages by
# scripts/etcd-go.sh),
# then the interop matrix against the official C++ and Python interop peers (built once by
# interop/peers/ into /var/tmp/volley-peers); all of it on Volley's own HTTP/2 engine (the
# default), then a second time on `h2` (feature `volley/h2-default`).
set -euo pipefail
cd "$(dirname "$0")/.."
# The core crate's modules must not import each other in a circle (docs/ARCHITECTURE.md).
python3 scripts/module-cycles.py crates/*/src/lib.rs
if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
  echo "[test] installing etcd-server and etcd-client" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y etcd-server etcd-client >/dev/null \
    || { apt-get update >/dev/null && apt-get install -y etcd-server etcd-client >/dev/null; }
fi
VOLLEY_PYTHON="$(scripts/python-env.sh)"
export VOLLEY_PYTHON
VOLLEY_ETCD_GO="$(scripts/etcd-go.sh)"
export VOLLEY_ETCD_GO
cargo test --workspace -- --include-ignored
interop/run-matrix.sh
# Every test again with `h2` serving client and server connections (the feature
# `volley/h2-default`), grpcio's, etcd's and the hostile-peer suite's included (the
# conformance cases then expect h2's answers where it deviates from RFC 9113), and the whole
# matrix again with the Volley binaries on h2.
cargo test --workspace --features volley/h2-default -- --include-ignored
interop/run-matrix.sh --h2
