"""A grpcio helloworld server for Volley's interop tests.

Usage: greeter_server.py GEN_DIR
Serves helloworld.Greeter on 127.0.0.1 with a free port, prints the port on stdout, and runs
until stdin closes.
"""

import sys
from concurrent import futures

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
import helloworld_pb2  # noqa: E402
import helloworld_pb2_grpc  # noqa: E402


class Greeter(helloworld_pb2_grpc.GreeterServicer):
    def SayHello(self, request, context):
        metadata = dict(context.invocation_metadata())
        if request.name == "fail":
            context.set_trailing_metadata((("x-python-reason-bin", b"\x00\xff"),))
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "python says no \u263a")
        context.send_initial_metadata((("x-python-initial", metadata.get("x-volley", "absent")),))
        context.set_trailing_metadata((("x-python-trailer-bin", b"\x00\x01\x02"),))
        return helloworld_pb2.HelloReply(message="Hello %s from grpcio" % request.name)


def main():
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        compression=grpc.Compression.Gzip,
    )
    helloworld_pb2_grpc.add_GreeterServicer_to_server(Greeter(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    sys.stdin.read()
    server.stop(0)


if __name__ == "__main__":
    main()
