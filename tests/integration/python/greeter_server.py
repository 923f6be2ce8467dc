"""A grpcio helloworld server for Volley's interop tests.

Usage: greeter_server.py GEN_DIR
Serves helloworld.Greeter on 127.0.0.1 with a free port, prints the port on stdout, and runs
until stdin closes. The name "fail" gets FAILED_PRECONDITION with trailing metadata; "rich" gets
INVALID_ARGUMENT with a google.rpc.BadRequest detail (grpcio-status); names starting with
"deflate" get a deflate-compressed reply.
"""

import sys
from concurrent import futures

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
import helloworld_pb2  # noqa: E402
import helloworld_pb2_grpc  # noqa: E402
from google.protobuf import any_pb2  # noqa: E402
from google.rpc import code_pb2, error_details_pb2, status_pb2  # noqa: E402
from grpc_status import rpc_status  # noqa: E402


class Greeter(helloworld_pb2_grpc.GreeterServicer):
    def SayHello(self, request, context):
        metadata = dict(context.invocation_metadata())
        if request.name == "rich":
            # Google's error model through grpcio-status: a BadRequest detail.
            detail = any_pb2.Any()
            detail.Pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field="name", description="python wants another name"
                        )
                    ]
                )
            )
            status = status_pb2.Status(
                code=code_pb2.INVALID_ARGUMENT, message="bad name", details=[detail]
            )
            context.abort_with_status(rpc_status.to_status(status))
        if request.name.startswith("deflate"):
            context.set_compression(grpc.Compression.Deflate)
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
