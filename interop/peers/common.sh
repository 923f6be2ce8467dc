# shellcheck shell=bash
# Sourced by the scripts in interop/peers/; not run on its own.
#
# Everything the peer scripts make goes under $VOLLEY_PEERS_DIR (default
# /var/tmp/volley-peers), outside the clone, so that every clone on the machine shares one
# build. Progress goes to stderr; a failed step prints the tail of its log and exits non-zero.
#
#   VOLLEY_PEERS_DIR    the cache folder (default /var/tmp/volley-peers)
#   VOLLEY_PEERS_FORCE  1: redo every step even when its result is already there
#   VOLLEY_PEERS_JOBS   parallel compile jobs (default: the number of cores)

PEERS_DIR=${VOLLEY_PEERS_DIR:-/var/tmp/volley-peers}
[[ $PEERS_DIR == /* ]] || PEERS_DIR=$PWD/$PEERS_DIR
FORCE=${VOLLEY_PEERS_FORCE:-0}
JOBS=${VOLLEY_PEERS_JOBS:-$(nproc 2>/dev/null || echo 2)}
LOGDIR=$PEERS_DIR/logs
mkdir -p "$LOGDIR"

say() { printf '[peers:%s %s] %s\n' "$TAG" "$(date +%H:%M:%S)" "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

# run LOGNAME CMD...: runs CMD with its output in $LOGDIR/LOGNAME.log; on failure shows the
# log's last lines and exits.
run() {
  local log=$LOGDIR/$1.log; shift
  if ! "$@" >"$log" 2>&1; then
    tail -n 25 "$log" >&2
    fail "$* (full log: $log)"
  fi
}

# hold_lock NAME: serialises runs of one script on one cache folder (CI and a developer, or
# two clones), for the rest of the calling script.
hold_lock() {
  exec 8>"$PEERS_DIR/.lock-$1"
  flock -n 8 || { say "another run holds $PEERS_DIR/.lock-$1; waiting"; flock 8; }
}

# need_debs PKG...: installs the Debian packages that are missing (one apt-get update first
# if the install fails on stale or absent package lists).
need_debs() {
  local p missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  [[ $(id -u) == 0 ]] || fail "root is needed to install ${missing[*]}"
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >"$LOGDIR/apt-install.log" 2>&1; then
    run apt-update apt-get update
    run apt-install apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
}
