#!/usr/bin/env bash
# Server instructions per unary request, under valgrind's callgrind, for Volley, tonic and the
# bare h2 floor: a deterministic measure (unlike time on a shared VM) for comparing two builds.
#
#   bench/instructions.sh [-n REQUESTS] [volley|volley-engine|tonic|h2|volley-metrics|volley-traced ...]
#
# CALLGRIND_KEEP=DIR keeps each server's profile as DIR/callgrind.IMPL (callgrind_annotate).
#
# Each server answers 1,000 warm-up requests, then callgrind's counters are zeroed and h2load
# sends REQUESTS (default 20,000) 1-byte SayHello calls over 4 connections with 50 streams
# each; the instructions counted over those requests are divided by REQUESTS.
# Needs valgrind and h2load (Debian: valgrind, nghttp2-client); builds bench/ in release.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
requests=20000
if [[ "${1:-}" == "-n" ]]; then
    requests="$2"
    shift 2
fi
impls=("$@")
[[ ${#impls[@]} -gt 0 ]] || impls=(volley tonic h2)

for tool in valgrind callgrind_control h2load; do
    command -v "$tool" > /dev/null || { echo "instructions.sh: $tool is not installed" >&2; exit 1; }
done
# The observed servers need the bench's `otel` feature (and then every server is built with
# Volley's `opentelemetry` feature compiled in).
features=()
for impl in "${impls[@]}"; do
    [[ "$impl" == volley-metrics || "$impl" == volley-traced ]] && features=(--features otel)
done
(cd "$here" && cargo build --release --quiet --bin bench-server "${features[@]}")
server="${CARGO_TARGET_DIR:-$here/target}/release/bench-server"

work="$(mktemp -d /tmp/volley-instructions.XXXXXX)"
pid=""
cleanup() {
    [[ -n "$pid" ]] && kill "$pid" 2> /dev/null && wait "$pid" 2> /dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# The gRPC body: no compression, length 3, HelloRequest { name: "x" }.
printf '\x00\x00\x00\x00\x03\x0a\x01x' > "$work/body.bin"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

load() {
    h2load -n "$1" -c 4 -m 50 -H 'content-type: application/grpc' -H 'te: trailers' \
        -d "$work/body.bin" "http://127.0.0.1:$2/helloworld.Greeter/SayHello"
}

declare -A per_request
for impl in "${impls[@]}"; do
    port="$(free_port)"
    out="$work/callgrind.$impl"
    valgrind --tool=callgrind --callgrind-out-file="$out" "$server" --impl "$impl" --port "$port" \
        > "$work/stdout.$impl" 2> "$work/stderr.$impl" &
    pid=$!
    for _ in $(seq 300); do
        grep -q ready "$work/stdout.$impl" && break
        kill -0 "$pid" 2> /dev/null || { cat "$work/stderr.$impl" >&2; exit 1; }
        sleep 0.1
    done
    grep -q ready "$work/stdout.$impl" || { echo "instructions.sh: $impl did not start" >&2; exit 1; }
    load 1000 "$port" > /dev/null
    callgrind_control --zero "$pid" > /dev/null 2>&1
    load "$requests" "$port" | grep -q "$requests succeeded" \
        || { echo "instructions.sh: $impl did not answer every request" >&2; exit 1; }
    callgrind_control --dump "$pid" > /dev/null 2>&1
    # The dump is written asynchronously, as "<out>.1".
    for _ in $(seq 100); do
        grep -q '^summary:' "$out.1" 2> /dev/null && break
        sleep 0.1
    done
    kill "$pid"
    wait "$pid" 2> /dev/null || true
    pid=""
    total="$(awk '/^summary:/ { print $2 }' "$out.1")"
    [[ -n "$total" ]] || { echo "instructions.sh: no callgrind summary for $impl" >&2; exit 1; }
    per_request[$impl]=$((total / requests))
    # CALLGRIND_KEEP=DIR keeps each profile there, for callgrind_annotate.
    if [[ -n "${CALLGRIND_KEEP:-}" ]]; then mkdir -p "$CALLGRIND_KEEP"; cp "$out.1" "$CALLGRIND_KEEP/callgrind.$impl"; fi
    printf '%-14s %8d instructions per request\n' "$impl" "${per_request[$impl]}"
done

if [[ -n "${per_request[tonic]:-}" ]]; then
    for impl in "${impls[@]}"; do
        [[ "$impl" == tonic ]] && continue
        awk -v a="${per_request[tonic]}" -v b="${per_request[$impl]}" -v i="$impl" \
            'BEGIN { printf "tonic / %s instructions: %.2fx\n", i, a / b }'
    done
fi
