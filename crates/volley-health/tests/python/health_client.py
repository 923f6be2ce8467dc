"""grpcio-health-checking's client against a Volley health service.

Usage: health_client.py HOST:PORT. Checks "" (SERVING), "no.Such" (NOT_FOUND) and "a.B"
(SERVING), then watches "a.B": prints `watch SERVING`, waits for the next status (the Rust
test flips it when it reads that line) and prints `watch NOT_SERVING`. Exits non-zero on
any other answer.
"""

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main() -> None:
    target = sys.argv[1]
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        serving = health_pb2.HealthCheckResponse.SERVING
        reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert reply.status == serving, reply
        try:
            stub.Check(health_pb2.HealthCheckRequest(service="no.Such"), timeout=10)
            raise AssertionError("Check of an unknown service succeeded")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND, e
        reply = stub.Check(health_pb2.HealthCheckRequest(service="a.B"), timeout=10)
        assert reply.status == serving, reply
        print("check ok", flush=True)
        watch = stub.Watch(health_pb2.HealthCheckRequest(service="a.B"), timeout=20)
        for reply in watch:
            name = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            print(f"watch {name}", flush=True)
            if reply.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                watch.cancel()
                return
        raise AssertionError("the watch ended before NOT_SERVING")


if __name__ == "__main__":
    main()
