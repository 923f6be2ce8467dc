#!/usr/bin/env bash
# Builds (once, again when its source changes) the Go peer of the etcd discovery interop test,
# interop/etcd-go/main.go, on etcd's own Go naming packages and grpc-go, from Debian's Go
# packages (installed when missing; GOPATH mode, no network), and prints the binary's path.
# The build lives in $VOLLEY_ETCD_GO_DIR (default /var/tmp/volley-etcd-go).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${VOLLEY_ETCD_GO_DIR:-/var/tmp/volley-etcd-go}"
src="$root/interop/etcd-go/main.go"
if ! command -v go >/dev/null || [ ! -d /usr/share/gocode/src/go.etcd.io/etcd/clientv3/naming ] \
    || [ ! -d /usr/share/gocode/src/google.golang.org/grpc ]; then
    export DEBIAN_FRONTEND=noninteractive
    packages="golang-go golang-etcd-server-dev golang-google-grpc-dev"
    apt-get install -y -qq --no-install-recommends $packages >&2 \
        || { apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends $packages >&2; }
fi
sum="$(sha256sum "$src" | cut -c1-16)"
bin="$dir/etcd-go-$sum"
if [ ! -x "$bin" ]; then
    mkdir -p "$dir/gopath"
    GO111MODULE=off GOPATH="$dir/gopath:/usr/share/gocode" GOCACHE="$dir/cache" \
        go build -o "$bin.tmp" "$src" >&2
    mv "$bin.tmp" "$bin"
fi
echo "$bin"
