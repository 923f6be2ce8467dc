#!/usr/bin/env bash
# Unpacks the upstream gRPC tree from Debian's `grpc` source package into
# $VOLLEY_PEERS_DIR/src/grpc and prints that path. The interop client and server code of the
# C++ and Python peers comes from there (test/cpp/interop, src/python/grpcio_tests).
#
# The source version is the one of the installed libgrpc++-dev (the C++ peers link against it
# and use gRPC internals, so the two must match); with no libgrpc++-dev installed, the newest.
# apt reads a private deb-src list made from the machine's own `deb` entries (apt options point
# its lists and cache into the cache folder), so the system's apt setup is left as it is.
# Only the orig tarball is unpacked (Debian's patches touch packaging, not the interop code).
# A second run finds the tree and does nothing.
set -euo pipefail
TAG=source
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

version=$(dpkg-query -W -f='${source:Version}' libgrpc++-dev 2>/dev/null || true)
dest=$PEERS_DIR/src/grpc
stamp=$dest/.volley-source
if [[ $FORCE != 1 && -f $stamp && ( -z $version || $(cat "$stamp") == "grpc $version" ) ]]; then
  echo "$dest"; exit 0
fi
hold_lock source

apt_dir=$PEERS_DIR/apt
mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
apt_opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
          -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache")

# deb-src twins of the machine's enabled `deb` entries, in both of apt's formats.
rm -f "$apt_dir"/sources.list.d/*
for f in /etc/apt/sources.list.d/*.sources; do
  [[ -r $f ]] || continue
  awk 'BEGIN { RS = ""; ORS = "\n\n" }
       tolower($0) ~ /(^|\n)enabled:[ \t]*no/ { next }
       /(^|\n)Types:[^\n]*(^|[ \t])deb([ \t]|\n|$)/ {
         gsub(/(^|\n)#[^\n]*/, "")
         sub(/Types:[^\n]*/, "Types: deb-src"); print }' "$f" \
    >"$apt_dir/sources.list.d/$(basename "$f")"
done
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
  [[ -r $f ]] || continue
  sed -n 's/^[[:space:]]*deb[[:space:]]/deb-src /p' "$f" >"$apt_dir/sources.list.d/$(basename "$f").list"
done
find "$apt_dir/sources.list.d" -empty -delete
ls "$apt_dir"/sources.list.d/* >/dev/null 2>&1 \
  || fail "no 'deb' entries in /etc/apt to make deb-src entries from"

say "apt-get update of the private deb-src lists"
# One unreachable extra repository must not stop us: what counts is a Sources index.
apt-get "${apt_opts[@]}" update >"$LOGDIR/apt-src-update.log" 2>&1 || true
ls "$apt_dir"/lists/*Sources* >/dev/null 2>&1 \
  || { tail -n 20 "$LOGDIR/apt-src-update.log" >&2; fail "no Sources index was downloaded"; }

spec=grpc${version:+=$version}
download=$PEERS_DIR/src/.download
rm -rf "$download"; mkdir -p "$download"
# apt drops root to _apt for downloads; let it write there.
id _apt >/dev/null 2>&1 && chown _apt "$download"
say "apt-get source --download-only $spec"
(cd "$download" && run apt-source apt-get "${apt_opts[@]}" source --download-only "$spec")
orig=$(find "$download" -maxdepth 1 -name 'grpc_*.orig.tar.*' ! -name '*.asc' | head -n 1)
[[ -n $orig ]] || fail "the source package has no orig tarball (see $download)"

say "unpacking $(basename "$orig")"
rm -rf "$dest" "$dest.tmp"; mkdir -p "$dest.tmp"
tar -xf "$orig" -C "$dest.tmp" --strip-components=1
[[ -f $dest.tmp/test/cpp/interop/interop_client.cc ]] || fail "$(basename "$orig") holds no interop code"
dsc=$(find "$download" -maxdepth 1 -name 'grpc_*.dsc' | head -n 1)
ver=$(basename "$dsc" .dsc); ver=${ver#grpc_}
echo "grpc ${version:-$ver}" >"$dest.tmp/.volley-source"
mv "$dest.tmp" "$dest"
rm -rf "$download"
say "gRPC ${version:-$ver} source in $dest"
echo "$dest"
