"""grpcio-status reads a Volley server's rich error.

Usage: rich_error_client.py GEN_DIR HOST:PORT. Calls SayHello(name="rich"), expects
INVALID_ARGUMENT, reads the google.rpc.Status with rpc_status.from_call and prints
`code N`, `message M` and one `violation FIELD: DESCRIPTION` line per BadRequest violation.
"""

import sys

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
import helloworld_pb2  # noqa: E402
import helloworld_pb2_grpc  # noqa: E402
from google.rpc import error_details_pb2  # noqa: E402
from grpc_status import rpc_status  # noqa: E402


def main() -> None:
    with grpc.insecure_channel(sys.argv[2]) as channel:
        stub = helloworld_pb2_grpc.GreeterStub(channel)
        try:
            stub.SayHello(helloworld_pb2.HelloRequest(name="rich"), timeout=10)
            raise AssertionError("the call succeeded")
        except grpc.RpcError as call:
            assert call.code() == grpc.StatusCode.INVALID_ARGUMENT, call
            status = rpc_status.from_call(call)
            assert status is not None, "no grpc-status-details-bin"
            print(f"code {status.code}", flush=True)
            print(f"message {status.message}", flush=True)
            for detail in status.details:
                bad = error_details_pb2.BadRequest()
                if detail.Unpack(bad):
                    for v in bad.field_violations:
                        print(f"violation {v.field}: {v.description}", flush=True)


if __name__ == "__main__":
    main()
