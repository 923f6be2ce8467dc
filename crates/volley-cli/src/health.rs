//! `volley health`: gRPC's health checking protocol (`grpc.health.v1.Health`), with
//! `grpc_health_probe`'s exit codes so that it can serve as a Kubernetes exec probe.

use std::io::Write;
use std::time::Duration;

use volley::{Channel, Code, Request};
use volley_health::proto::health_check_response::ServingStatus;
use volley_health::proto::{HealthCheckRequest, HealthClient};

/// The exit code when the server is SERVING.
pub const SERVING: i32 = 0;
/// The exit code when the connection failed (as `grpc_health_probe`).
pub const CONNECTION_FAILED: i32 = 2;
/// The exit code when the health call failed otherwise.
pub const RPC_FAILED: i32 = 3;
/// The exit code when the server answered, but not SERVING.
pub const UNHEALTHY: i32 = 4;

fn name(status: i32) -> &'static str {
    ServingStatus::try_from(status).map_or("UNKNOWN", |s| s.as_str_name())
}

fn exit_for(status: i32) -> i32 {
    if status == ServingStatus::Serving as i32 {
        SERVING
    } else {
        UNHEALTHY
    }
}

fn failed(out: &mut impl Write, status: &volley::Status) -> i32 {
    let _ = writeln!(out, "health check failed: {status}");
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded => CONNECTION_FAILED,
        _ => RPC_FAILED,
    }
}

/// Checks `service` ("" for the whole server) once, or with `watch` follows its status
/// until the server ends the stream; prints each status and returns the exit code of the
/// last.
pub async fn health(
    channel: &Channel,
    service: &str,
    watch: bool,
    timeout: Duration,
    out: &mut impl Write,
) -> i32 {
    let client = HealthClient::new(channel.clone());
    let request = HealthCheckRequest {
        service: service.to_owned(),
    };
    if !watch {
        let mut request = Request::new(request);
        request.set_timeout(timeout);
        return match client.check(request).await {
            Ok(response) => {
                let status = response.into_inner().status;
                let _ = writeln!(out, "{}", name(status));
                exit_for(status)
            }
            Err(status) => failed(out, &status),
        };
    }
    let mut stream = match client.watch(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => return failed(out, &status),
    };
    let mut last = UNHEALTHY;
    loop {
        match stream.message().await {
            Ok(Some(response)) => {
                let _ = writeln!(out, "{}", name(response.status));
                let _ = out.flush();
                last = exit_for(response.status);
            }
            Ok(None) => return last,
            Err(status) => return failed(out, &status),
        }
    }
}
