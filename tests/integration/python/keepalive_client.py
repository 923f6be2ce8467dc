"""A grpcio client that pings far too often, for Volley's ping enforcement test.

Usage: keepalive_client.py GEN_DIR HOST:PORT
Calls once, stays idle for 7 s while pinging as often as C-core allows (every second) (C-core's keepalive, no limit on pings
without data), then calls again; prints one line per call. C-core logs the server's GOAWAY
ENHANCE_YOUR_CALM "too_many_pings" (and its keepalive throttling) on stderr.
"""

import sys
import time

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
import helloworld_pb2  # noqa: E402
import helloworld_pb2_grpc  # noqa: E402


def main():
    options = [
        ("grpc.keepalive_time_ms", 200),
        ("grpc.keepalive_timeout_ms", 5000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    with grpc.insecure_channel(sys.argv[2], options=options) as channel:
        stub = helloworld_pb2_grpc.GreeterStub(channel)
        reply = stub.SayHello(helloworld_pb2.HelloRequest(name="first"), timeout=10)
        print("first: %s" % reply.message, flush=True)
        time.sleep(7)
        reply = stub.SayHello(
            helloworld_pb2.HelloRequest(name="second"), timeout=10, wait_for_ready=True
        )
        print("second: %s" % reply.message, flush=True)


if __name__ == "__main__":
    main()
