#!/usr/bin/env bash
# Builds gRPC's official C++ interop client and server (test/cpp/interop of the gRPC source,
# from grpc-source.sh) against Debian's libgrpc++ of the same version, with g++ and make (no
# CMake, no Bazel), into
#   $VOLLEY_PEERS_DIR/bin/cpp_interop_client
#   $VOLLEY_PEERS_DIR/bin/cpp_interop_server
# and prints that bin folder. Installs the Debian packages it needs. make keeps the objects,
# so a second run only checks that the binaries still load (about a second); the first takes
# about a minute on 2 cores, plus the package installs.
set -euo pipefail
TAG=cpp
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/common.sh"

BIN=$PEERS_DIR/bin
loads() { [[ -x $1 ]] && ! ldd "$1" 2>/dev/null | grep -q 'not found'; }

need_debs g++ make pkg-config libgrpc++-dev libgrpc-dev libprotobuf-dev protobuf-compiler \
  protobuf-compiler-grpc libabsl-dev libssl-dev
if [[ $FORCE != 1 ]] && loads "$BIN/cpp_interop_client" && loads "$BIN/cpp_interop_server"; then
  echo "$BIN"; exit 0
fi

SRC=$("$HERE/grpc-source.sh")
hold_lock cpp
OUT=$PEERS_DIR/build/cpp
[[ $FORCE == 1 ]] && rm -rf "$OUT"
mkdir -p "$OUT/gen" "$BIN"

# The test protos' C++ messages and stubs.
PROTOS=(src/proto/grpc/testing/empty.proto src/proto/grpc/testing/messages.proto
        src/proto/grpc/testing/test.proto)
if [[ ! -f $OUT/gen/src/proto/grpc/testing/test.grpc.pb.cc ]]; then
  say "protoc + grpc_cpp_plugin: ${PROTOS[*]}"
  (cd "$SRC" && run protoc protoc -I. --cpp_out="$OUT/gen" --grpc_out="$OUT/gen" \
    --plugin=protoc-gen-grpc="$(command -v grpc_cpp_plugin)" "${PROTOS[@]}")
fi

# What each binary is made of, in gRPC 1.51's tree: the generated stubs, the test utilities
# both use (flags, channel and credential helpers, the compiled-in test certificates), then
# each one's own files.
GEN=()
for p in "${PROTOS[@]}"; do GEN+=("gen/${p%.proto}.pb.cc" "gen/${p%.proto}.grpc.pb.cc"); done
UTIL=(test/cpp/util/test_config_cc.cc test/cpp/util/create_test_channel.cc
      test/cpp/util/test_credentials_provider.cc test/core/util/test_config.cc
      test/core/util/build.cc test/core/util/stack_tracer.cc test/core/util/histogram.cc
      test/core/util/port.cc test/core/util/port_server_client.cc
      test/core/event_engine/test_init.cc test/core/end2end/data/client_certs.cc
      test/core/end2end/data/server1_cert.cc test/core/end2end/data/server1_key.cc
      test/core/end2end/data/test_root_cert.cc)
CLIENT=(test/cpp/interop/client.cc test/cpp/interop/client_helper.cc
        test/cpp/interop/interop_client.cc test/core/security/oauth2_utils.cc)
SERVER=(test/cpp/interop/interop_server.cc test/cpp/interop/interop_server_bootstrap.cc
        test/cpp/interop/server_helper.cc)

objs() { local s; for s in "$@"; do printf ' obj/%s.o' "${s%.cc}"; done; }
libs=$(pkg-config --libs grpc++ protobuf absl_flags absl_flags_parse \
  absl_failure_signal_handler absl_symbolize absl_stacktrace absl_str_format absl_strings \
  absl_synchronization absl_status absl_statusor absl_time)
{
  echo "SRC := $SRC"
  echo "CXXFLAGS := -std=c++17 -O1 -g0 -w -Igen -I\$(SRC) -I\$(SRC)/third_party/upb \
-I\$(SRC)/src/core/ext/upb-generated -I\$(SRC)/third_party/xxhash"
  echo "LIBS := $libs -lgrpc -lgpr -lssl -lcrypto -lpthread"
  echo "all: interop_client interop_server"
  echo "interop_client:$(objs "${GEN[@]}" "${UTIL[@]}" "${CLIENT[@]}")"
  printf '\t$(CXX) -o $@ $^ $(LIBS)\n'
  echo "interop_server:$(objs "${GEN[@]}" "${UTIL[@]}" "${SERVER[@]}")"
  printf '\t$(CXX) -o $@ $^ $(LIBS)\n'
  echo "obj/gen/%.o: gen/%.cc"
  printf '\t@mkdir -p $(dir $@) && echo "  c++ $<" >&2 && $(CXX) $(CXXFLAGS) -c $< -o $@\n'
  echo "obj/%.o: \$(SRC)/%.cc"
  printf '\t@mkdir -p $(dir $@) && echo "  c++ $<" >&2 && $(CXX) $(CXXFLAGS) -c $< -o $@\n'
} >"$OUT/Makefile"

say "make -j$JOBS in $OUT (about a minute from nothing on 2 cores)"
run make make -C "$OUT" -j"$JOBS"
install -m 0755 "$OUT/interop_client" "$BIN/cpp_interop_client"
install -m 0755 "$OUT/interop_server" "$BIN/cpp_interop_server"
loads "$BIN/cpp_interop_client" && loads "$BIN/cpp_interop_server" \
  || fail "the built binaries do not load (ldd reports missing libraries)"
say "built $BIN/cpp_interop_client and $BIN/cpp_interop_server in ${SECONDS}s"
echo "$BIN"
