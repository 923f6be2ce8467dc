#!/usr/bin/env bash
# Runs gRPC's interop test cases for every client against every server, plaintext and TLS:
#   Volley x Volley, Volley client x C++ server, Volley client x Python server,
#   C++ client x Volley server, Python client x Volley server;
# then gRPC's negative HTTP/2 cases, the Volley client against upstream's http2_test_server.py.
# The C++ and Python peers are the official interop binaries that interop/peers/ builds once
# into $VOLLEY_PEERS_DIR (default /var/tmp/volley-peers). Prints a matrix, then `N passed, M failed`;
# exits 1 when anything failed. Cells a peer does not support are skipped (and listed), never
# counted as passed.
#
# Usage: interop/run-matrix.sh [--quick] [--h2]
#   --quick: plaintext only
#   --h2:    the Volley binaries are built with `h2` serving both the client's and the
#            server's connections (feature `volley/h2-default`) instead of Volley's own
#            HTTP/2 engine.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
LOGS=$(mktemp -d "${TMPDIR:-/tmp}/volley-interop.XXXXXX")
SOAK_FLAGS=(--soak_iterations=10 --soak_overall_timeout_seconds=60
            --soak_per_iteration_max_acceptable_latency_ms=2000)
MODES=(plaintext tls)
H2=0
for arg in "$@"; do
  case $arg in
    --quick) MODES=(plaintext) ;;
    --h2) H2=1 ;;
    *) echo "usage: $0 [--quick] [--h2]" >&2; exit 2 ;;
  esac
done
FEATURES=()
((H2)) && FEATURES=(--features volley/h2-default)

log() { echo "[matrix] $*" >&2; }

log "building the Volley interop binaries"
(cd "$ROOT" && cargo build -q -p volley-interop --bins "${FEATURES[@]}")
VOLLEY_SERVER=$TARGET/debug/volley-interop-server
VOLLEY_CLIENT=$TARGET/debug/volley-interop-client

log "building the C++ and Python peers (interop/peers/, cached in ${VOLLEY_PEERS_DIR:-/var/tmp/volley-peers})"
PEERS=$("$ROOT/interop/peers/cpp.sh")
"$ROOT/interop/peers/python.sh" >/dev/null
# The Volley binaries compile in interop/certs; the peers use upstream's own copies.
GRPC_SRC=$("$ROOT/interop/peers/grpc-source.sh")
for cert in ca.pem server1.pem server1.key; do
  cmp -s "$ROOT/interop/certs/$cert" "$GRPC_SRC/src/core/tsi/test_creds/$cert" \
    || { log "interop/certs/$cert differs from gRPC's src/core/tsi/test_creds/$cert"; exit 1; }
done

CORE=(empty_unary large_unary client_streaming server_streaming ping_pong empty_stream
      timeout_on_sleeping_server cancel_after_begin cancel_after_first_response
      status_code_and_message special_status_message custom_metadata unimplemented_method
      unimplemented_service)
COMPRESSION=(client_compressed_unary server_compressed_unary client_compressed_streaming
             server_compressed_streaming)
EXTRA=(half_duplex rpc_soak channel_soak)
ALL_CASES=("${CORE[@]}" "${COMPRESSION[@]}" "${EXTRA[@]}")

# The cases each client implements (interop/peers/README.md lists the peers').
client_cases() {
  case $1 in
    volley | cpp) echo "${ALL_CASES[@]}" ;;
    python) echo "${CORE[@]}" ;;
  esac
}

# Why a cell is skipped, or nothing when it runs.
skip_reason() { # client server case
  local server=$2 case=$3
  if ! [[ " $(client_cases "$1") " == *" $case "* ]]; then
    echo "the $1 client does not implement it"
  elif [[ $server == python && " ${COMPRESSION[*]} " == *" $case "* ]]; then
    echo "the Python server does not check or set message compression"
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() {
  local port=$1 pid=$2
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

declare -A PORT
start_server() { # name mode
  local name=$1 mode=$2 port bin tls=()
  port=$(free_port)
  case $name in
    volley) bin=$VOLLEY_SERVER ;;
    cpp) bin=$PEERS/cpp_interop_server ;;
    python) bin=$PEERS/py_interop_server ;;
  esac
  [[ $mode == tls ]] && tls=(--use_tls=true)
  "$bin" --port="$port" "${tls[@]}" >"$LOGS/server-$name-$mode.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  if ! wait_port "$port" "$pid"; then
    log "the $name server ($mode) did not start:"; cat "$LOGS/server-$name-$mode.log" >&2
    exit 1
  fi
  PORT[$name-$mode]=$port
}

for mode in "${MODES[@]}"; do
  for server in volley cpp python; do start_server "$server" "$mode"; done
done

PAIRS=(volley:volley volley:cpp volley:python cpp:volley python:volley)
declare -A RESULT
passed=0; failed=0; skipped=0
SKIPS=()
FAILS=()

run_cell() { # client server mode case
  local client=$1 server=$2 mode=$3 case=$4 bin out rc=0
  local flags=(--server_host=127.0.0.1 --server_port="${PORT[$server-$mode]}" --test_case="$case")
  [[ $mode == tls ]] && flags+=(--use_tls=true --use_test_ca=true --server_host_override=foo.test.google.fr)
  [[ $case == *_soak ]] && flags+=("${SOAK_FLAGS[@]}")
  case $client in
    volley) bin=$VOLLEY_CLIENT ;;
    cpp) bin=$PEERS/cpp_interop_client ;;
    python) bin=$PEERS/py_interop_client ;;
  esac
  out=$LOGS/$client-$server-$mode-$case.log
  if [[ $client == cpp && $case == client_compressed_* ]]; then
    # The C++ client exits 0 when the server fails its probe; only its debug line proves the
    # case ran (interop/peers/README.md, Quirks).
    GRPC_VERBOSITY=debug timeout 60 "$bin" "${flags[@]}" >"$out" 2>&1 || rc=$?
    if [[ $rc == 0 ]] && ! grep -q "probe succeeded. Proceeding." "$out"; then rc=99; fi
  else
    timeout 60 "$bin" "${flags[@]}" >"$out" 2>&1 || rc=$?
  fi
  return $rc
}

for pair in "${PAIRS[@]}"; do
  client=${pair%%:*}; server=${pair##*:}
  for mode in "${MODES[@]}"; do
    for case in "${ALL_CASES[@]}"; do
      key="$pair/$mode/$case"
      reason=$(skip_reason "$client" "$server" "$case")
      if [[ -n $reason ]]; then
        RESULT[$key]=skip; skipped=$((skipped + 1))
        SKIPS+=("$client client x $server server, $mode, $case: $reason")
        continue
      fi
      if run_cell "$client" "$server" "$mode" "$case"; then
        RESULT[$key]=pass; passed=$((passed + 1))
      else
        RESULT[$key]=FAIL; failed=$((failed + 1))
        FAILS+=("$client client x $server server, $mode, $case (log: $LOGS/$client-$server-$mode-$case.log)")
      fi
    done
  done
done

# gRPC's negative HTTP/2 cases (doc/http2-interop-test-descriptions.md): the Volley client
# against upstream's http2_test_server.py (interop/peers/http2.sh), which serves one case per
# port from a base port on. A case passes when the client exits 0 and the server, which
# asserts its side (the ping count, a second connection after GOAWAY), logged no error.
HTTP2_CASES=(data_frame_padding goaway max_streams no_df_padding_sanity_test ping rst_after_data
             rst_after_header rst_during_data)
declare -A HTTP2_RESULT
if ((${#HTTP2_CASES[@]})); then
  log "the negative HTTP/2 cases against gRPC's http2_test_server.py"
  HTTP2_BIN=$("$ROOT/interop/peers/http2.sh")
  HTTP2_BASE=$(python3 -c '
import random, socket
while True:
    base = random.randrange(20000, 60000)
    socks = []
    try:
        for p in range(base, base + 8):
            s = socket.socket(); s.bind(("127.0.0.1", p)); socks.append(s)
        print(base); break
    except OSError:
        pass
    finally:
        for s in socks: s.close()')
  HTTP2_LOG=$LOGS/http2-server.log
  "$HTTP2_BIN/http2_test_server" --base_port="$HTTP2_BASE" >"$HTTP2_LOG" 2>&1 &
  HTTP2_PID=$!
  PIDS+=("$HTTP2_PID")
  wait_port $((HTTP2_BASE + ${#HTTP2_CASES[@]} - 1)) "$HTTP2_PID" \
    || { log "http2_test_server did not start:"; cat "$HTTP2_LOG" >&2; exit 1; }
  for i in "${!HTTP2_CASES[@]}"; do
    case=${HTTP2_CASES[$i]}
    out=$LOGS/volley-http2-$case.log
    errors_before=$(grep -c "Unhandled Error" "$HTTP2_LOG" || true)
    requests_before=$(grep -c "RequestReceived Event" "$HTTP2_LOG" || true)
    ends_before=$(grep -c "Disconnect" "$HTTP2_LOG" || true)
    rc=0
    timeout 60 "$VOLLEY_CLIENT" --server_host=127.0.0.1 --server_port=$((HTTP2_BASE + i)) \
      --test_case="$case" >"$out" 2>&1 || rc=$?
    # The server checks its side when the connection ends: wait (5 s at most) for that line.
    for _ in $(seq 1 50); do
      (($(grep -c "Disconnect" "$HTTP2_LOG" || true) > ends_before)) && break
      sleep 0.1
    done
    errors_after=$(grep -c "Unhandled Error" "$HTTP2_LOG" || true)
    requests_after=$(grep -c "RequestReceived Event" "$HTTP2_LOG" || true)
    if [[ $rc == 0 && $errors_after == "$errors_before" && $requests_after -gt $requests_before ]]; then
      HTTP2_RESULT[$case]=pass; passed=$((passed + 1))
    else
      HTTP2_RESULT[$case]=FAIL; failed=$((failed + 1))
      FAILS+=("volley client x http2_test_server, $case (client exit $rc, server errors $((errors_after - errors_before)); logs: $out, $HTTP2_LOG)")
    fi
  done
fi

# The matrix: one row per case, one column per client x server x mode.
header=$(printf '%-30s' "case \\ client>server")
for pair in "${PAIRS[@]}"; do
  for mode in "${MODES[@]}"; do header+=$(printf ' %-19s' "${pair/:/>} ${mode:0:5}"); done
done
echo "$header"
for case in "${ALL_CASES[@]}"; do
  row=$(printf '%-30s' "$case")
  for pair in "${PAIRS[@]}"; do
    for mode in "${MODES[@]}"; do row+=$(printf ' %-19s' "${RESULT[$pair/$mode/$case]}"); done
  done
  echo "$row"
done
if ((${#HTTP2_CASES[@]})); then
  echo
  printf '%-30s %s\n' "negative HTTP/2 case" "volley>http2_test_server"
  for case in "${HTTP2_CASES[@]}"; do printf '%-30s %s\n' "$case" "${HTTP2_RESULT[$case]}"; done
fi
echo
if ((${#SKIPS[@]})); then
  echo "skipped ($skipped):"
  printf '  %s\n' "${SKIPS[@]}" | sort | uniq
fi
if ((${#FAILS[@]})); then
  echo "failed:"
  printf '  %s\n' "${FAILS[@]}"
fi
echo "$passed passed, $failed failed"
((failed == 0))
