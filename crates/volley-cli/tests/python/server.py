"""A grpcio server for the volley CLI's tests against a foreign implementation.

Usage: server.py GEN_DIR
Serves helloworld.Greeter and routeguide.RouteGuide with grpcio, plus grpcio-health-checking
and grpcio-reflection, on 127.0.0.1 with a free port; prints the port on stdout and runs until
stdin closes. SayHello with an empty name fails INVALID_ARGUMENT with a google.rpc.BadRequest
detail (grpcio-status). helloworld.Greeter is SERVING, routeguide.RouteGuide NOT_SERVING.
"""

import sys
from concurrent import futures

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
import helloworld_pb2  # noqa: E402
import helloworld_pb2_grpc  # noqa: E402
import route_guide_pb2  # noqa: E402
import route_guide_pb2_grpc  # noqa: E402
from google.protobuf import any_pb2  # noqa: E402
from google.rpc import code_pb2, error_details_pb2, status_pb2  # noqa: E402
from grpc_health.v1 import health, health_pb2, health_pb2_grpc  # noqa: E402
from grpc_reflection.v1alpha import reflection  # noqa: E402
from grpc_status import rpc_status  # noqa: E402

FEATURES = [
    ("Patriots Path, Mendham, NJ 07945, USA", 407838351, -746143763),
    ("101 New Jersey 10, Whippany, NJ 07981, USA", 408122808, -743999179),
]


class Greeter(helloworld_pb2_grpc.GreeterServicer):
    def SayHello(self, request, context):
        if not request.name:
            detail = any_pb2.Any()
            detail.Pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field="name", description="python wants a name"
                        )
                    ]
                )
            )
            status = status_pb2.Status(
                code=code_pb2.INVALID_ARGUMENT, message="no name", details=[detail]
            )
            context.abort_with_status(rpc_status.to_status(status))
        return helloworld_pb2.HelloReply(message="Hello %s from grpcio" % request.name)


def feature_at(point):
    for name, lat, lon in FEATURES:
        if point.latitude == lat and point.longitude == lon:
            return route_guide_pb2.Feature(name=name, location=point)
    return route_guide_pb2.Feature(name="", location=point)


class RouteGuide(route_guide_pb2_grpc.RouteGuideServicer):
    def GetFeature(self, request, context):
        return feature_at(request)

    def ListFeatures(self, request, context):
        for name, lat, lon in FEATURES:
            yield route_guide_pb2.Feature(
                name=name, location=route_guide_pb2.Point(latitude=lat, longitude=lon)
            )

    def RecordRoute(self, request_iterator, context):
        points = list(request_iterator)
        found = sum(1 for p in points if feature_at(p).name)
        return route_guide_pb2.RouteSummary(point_count=len(points), feature_count=found)

    def RouteChat(self, request_iterator, context):
        for note in request_iterator:
            yield route_guide_pb2.RouteNote(location=note.location, message="echo " + note.message)


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    helloworld_pb2_grpc.add_GreeterServicer_to_server(Greeter(), server)
    route_guide_pb2_grpc.add_RouteGuideServicer_to_server(RouteGuide(), server)
    health_servicer = health.HealthServicer()
    health_servicer.set("helloworld.Greeter", health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set("routeguide.RouteGuide", health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            helloworld_pb2.DESCRIPTOR.services_by_name["Greeter"].full_name,
            route_guide_pb2.DESCRIPTOR.services_by_name["RouteGuide"].full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    sys.stdin.read()
    server.stop(0)


if __name__ == "__main__":
    main()
