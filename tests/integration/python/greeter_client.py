"""A grpcio helloworld client for Volley's interop tests.

Usage: greeter_client.py GEN_DIR HOST:PORT
Makes a plain call, a gzip call with metadata, a failing call and a deflate call; prints one
line for each.
"""

import sys

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
import helloworld_pb2  # noqa: E402
import helloworld_pb2_grpc  # noqa: E402


def main():
    with grpc.insecure_channel(sys.argv[2]) as channel:
        stub = helloworld_pb2_grpc.GreeterStub(channel)
        reply = stub.SayHello(helloworld_pb2.HelloRequest(name="python"), timeout=10)
        print("plain: %s" % reply.message)

        reply, call = stub.SayHello.with_call(
            helloworld_pb2.HelloRequest(name="gzip " * 100),
            timeout=10,
            compression=grpc.Compression.Gzip,
            metadata=(("x-python", "1"), ("x-python-bin", b"\x01\x02")),
        )
        print("gzip: %d chars, code %s" % (len(reply.message), call.code().name))

        try:
            stub.SayHello(helloworld_pb2.HelloRequest(name=""), timeout=10)
            print("error: none")
        except grpc.RpcError as e:
            print("error: %s %s" % (e.code().name, e.details()))

        reply, call = stub.SayHello.with_call(
            helloworld_pb2.HelloRequest(name="deflate " * 100),
            timeout=10,
            compression=grpc.Compression.Deflate,
        )
        print("deflate: %d chars, code %s" % (len(reply.message), call.code().name))


if __name__ == "__main__":
    main()
