//! A production-shaped server: the greeter with health checking, server reflection and rich
//! error details, and a client that uses all three (`cargo run -p volley-examples --bin
//! production`).

use std::io::Write;

use volley::{Channel, Code, Request, Response, Status};
use volley_health::proto::{HealthCheckRequest, HealthClient};
use volley_reflection::proto::v1::server_reflection_request::MessageRequest;
use volley_reflection::proto::v1::server_reflection_response::MessageResponse;
use volley_reflection::proto::v1::{ServerReflectionClient, ServerReflectionRequest};
use volley_types::{BadRequest, StatusExt, bad_request::FieldViolation};

use crate::helloworld::{Greeter, GreeterClient, GreeterServer, HelloReply, HelloRequest};

/// A greeter that answers an empty name with INVALID_ARGUMENT and a `BadRequest` detail.
#[derive(Debug, Default)]
pub struct StrictGreeter;

impl Greeter for StrictGreeter {
    async fn say_hello(&self, req: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        let name = &req.get_ref().name;
        if name.is_empty() {
            return Err(Status::with_error_details(
                Code::InvalidArgument,
                "name must not be empty",
                [volley_types::detail(&BadRequest {
                    field_violations: vec![FieldViolation {
                        field: "name".into(),
                        description: "give a name to greet".into(),
                        ..Default::default()
                    }],
                })],
            ));
        }
        Ok(Response::new(HelloReply {
            message: format!("Hello {name}"),
        }))
    }
}

/// The server: greeter, health (`helloworld.Greeter` SERVING) and reflection, until
/// `shutdown` (then every status turns NOT_SERVING before the drain).
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Health and reflection, in three lines.
    let (health_reporter, health) = volley_health::health_service();
    health_reporter.set_serving("helloworld.Greeter");
    let reflection = volley_reflection::Builder::new()
        .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(volley_health::FILE_DESCRIPTOR_SET)
        .build()?;
    volley::Server::builder()
        .add_service(GreeterServer::new(StrictGreeter))
        .add_service(health)
        .add_service(reflection.v1())
        .add_service(reflection.v1alpha())
        .serve_with_listener(listener, health_reporter.shutdown_on(shutdown))
        .await?;
    Ok(())
}

/// The client: checks health, lists the services by reflection, greets, and reads the rich
/// error of an empty name. Writes what it sees to `out`.
pub async fn run(
    channel: Channel,
    out: &mut impl Write,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let health = HealthClient::new(channel.clone());
    let status = health
        .check(HealthCheckRequest {
            service: "helloworld.Greeter".into(),
        })
        .await?
        .into_inner()
        .status();
    writeln!(
        out,
        "health of helloworld.Greeter: {}",
        status.as_str_name()
    )?;

    let reflection = ServerReflectionClient::new(channel.clone());
    let list = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([list]))
        .await?
        .into_inner();
    if let Some(answer) = answers.message().await?
        && let Some(MessageResponse::ListServicesResponse(services)) = answer.message_response
    {
        let names: Vec<&str> = services.service.iter().map(|s| s.name.as_str()).collect();
        writeln!(out, "services: {}", names.join(", "))?;
    }

    let greeter = GreeterClient::new(channel);
    let reply = greeter
        .say_hello(HelloRequest {
            name: "production".into(),
        })
        .await?;
    writeln!(out, "reply: {}", reply.get_ref().message)?;
    let err = greeter
        .say_hello(HelloRequest {
            name: String::new(),
        })
        .await
        .expect_err("an empty name is refused");
    write!(out, "error: {:?} {}", err.code(), err.message())?;
    if let Some(bad) = err.get_detail::<BadRequest>() {
        for v in &bad.field_violations {
            write!(out, "; {}: {}", v.field, v.description)?;
        }
    }
    writeln!(out)?;
    Ok(())
}
