"""grpcio-reflection's descriptor database against a Volley server's reflection service.

Usage: reflection_client.py HOST:PORT SERVICE... Lists the server's services (they must
include every SERVICE named), then resolves each listed service and every method's input and
output types through a DescriptorPool backed by reflection alone. Prints one line per
service, `service NAME METHODS`, then `resolved N services`.
"""

import sys

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main() -> None:
    target, expected = sys.argv[1], sys.argv[2:]
    with grpc.insecure_channel(target) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = list(database.get_services())
        missing = [s for s in expected if s not in services]
        assert not missing, f"{missing} not listed in {services}"
        pool = DescriptorPool(database)
        for name in services:
            service = pool.FindServiceByName(name)
            for method in service.methods:
                # Both types resolve, with their own dependencies.
                assert method.input_type.full_name, method
                assert method.output_type.full_name, method
                pool.FindMessageTypeByName(method.input_type.full_name)
            print(f"service {name} {len(service.methods)}", flush=True)
        print(f"resolved {len(services)} services", flush=True)


if __name__ == "__main__":
    main()
