//! A foreign implementation: Python's grpcio calls Volley's helloworld server, and Volley's
//! client calls a grpcio helloworld server.
//!
//! Needs a Python with `grpcio` and `grpcio-tools` in `VOLLEY_PYTHON`; `scripts/test.sh`
//! installs one into a virtualenv and runs these tests (they are `#[ignore]`d otherwise).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use volley::{Code, Request};
use volley_examples::greeter::MyGreeter;
use volley_examples::helloworld::{GreeterClient, GreeterServer, HelloRequest};
use volley_integration_tests::bounded;

fn python() -> String {
    std::env::var("VOLLEY_PYTHON")
        .expect("VOLLEY_PYTHON must name a python with grpcio; scripts/test.sh sets it up")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name)
}

/// Generates the Python helloworld stubs from the project's own `.proto`.
async fn generate_stubs(tag: &str) -> PathBuf {
    let out = std::env::temp_dir().join(format!("volley-py-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let proto_dir = repo_root().join("examples/proto");
    let status = Command::new(python())
        .args(["-m", "grpc_tools.protoc"])
        .arg(format!("-I{}", proto_dir.display()))
        .arg(format!("--python_out={}", out.display()))
        .arg(format!("--grpc_python_out={}", out.display()))
        .arg(proto_dir.join("helloworld.proto"))
        .status()
        .await
        .unwrap();
    assert!(status.success(), "grpc_tools.protoc failed");
    out
}

/// Runs the Python script `name` with `args` (at most 60 s); returns its standard output and
/// error once it exited 0.
async fn run_python(name: &str, args: &[&str]) -> (String, String) {
    let output = bounded(
        60,
        Command::new(python())
            .arg(script(name))
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{name} failed:\n{stdout}\n{stderr}"
    );
    (stdout, stderr)
}

/// Runs the grpcio client `client_script` against a Volley greeter server (default options)
/// and returns the client's standard output and error once it succeeded.
async fn grpcio_client_against_volley(client_script: &str, tag: &str) -> (String, String) {
    grpcio_client_against(MyGreeter::default(), client_script, tag).await
}

/// Runs the grpcio client `client_script` against a Volley server of `greeter` (default
/// options) and returns the client's standard output and error once it succeeded.
async fn grpcio_client_against(
    greeter: impl volley_examples::helloworld::Greeter,
    client_script: &str,
    tag: &str,
) -> (String, String) {
    let stubs = generate_stubs(tag).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        volley::Server::builder()
            .add_service(GreeterServer::new(greeter))
            .serve_with_listener(listener, async {
                let _ = stopped.await;
            }),
    );
    let stubs_arg = stubs.display().to_string();
    let (stdout, stderr) = run_python(client_script, &[&stubs_arg, &addr.to_string()]).await;
    let _ = stop.send(());
    bounded(10, server).await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(stubs);
    (stdout, stderr)
}

#[tokio::test]
#[ignore = "needs Python grpcio: run by scripts/test.sh"]
async fn grpcio_client_calls_volley_server() {
    let (stdout, _) = grpcio_client_against_volley("greeter_client.py", "client").await;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "plain: Hello python");
    assert_eq!(lines[1], "gzip: 506 chars, code OK");
    assert_eq!(lines[2], "error: INVALID_ARGUMENT name must not be empty");
    assert_eq!(lines[3], "deflate: 806 chars, code OK");
}

/// Starts `greeter_server.py` (stubs generated under `tag`); returns the child (it stops
/// when its standard input closes), its port and the stubs' folder.
async fn start_grpcio_greeter(tag: &str) -> (tokio::process::Child, u16, PathBuf) {
    let stubs = generate_stubs(tag).await;
    let mut child = Command::new(python())
        .arg(script("greeter_server.py"))
        .arg(&stubs)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let port: u16 = bounded(30, lines.next_line())
        .await
        .unwrap()
        .expect("server printed its port")
        .trim()
        .parse()
        .unwrap();
    (child, port, stubs)
}

#[tokio::test]
#[ignore = "needs Python grpcio: run by scripts/test.sh"]
async fn volley_client_calls_grpcio_server() {
    let (mut child, port, stubs) = start_grpcio_greeter("server").await;
    let channel = volley::Channel::builder(&format!("http://127.0.0.1:{port}"))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let client = GreeterClient::new(channel);
    bounded(30, async {
        let mut request = Request::new(HelloRequest {
            name: "volley".into(),
        });
        request
            .metadata_mut()
            .insert("x-volley", "from-rust")
            .unwrap();
        let reply = client.say_hello(request).await.unwrap();
        assert_eq!(reply.metadata().get("x-python-initial"), Some("from-rust"));
        assert_eq!(
            reply
                .trailers()
                .get_bin("x-python-trailer-bin")
                .unwrap()
                .unwrap()
                .as_ref(),
            &[0, 1, 2]
        );
        assert_eq!(reply.into_inner().message, "Hello volley from grpcio");

        // gzip both ways: the server compresses its responses, the client its requests.
        let reply = client
            .clone()
            .send_compressed(volley::CompressionEncoding::Gzip)
            .say_hello(HelloRequest {
                name: "z".repeat(1000),
            })
            .await
            .unwrap();
        assert_eq!(
            reply.into_inner().message.len(),
            1000 + "Hello  from grpcio".len()
        );

        // deflate both ways: the server compresses with deflate when asked by name.
        let reply = client
            .clone()
            .send_compressed(volley::CompressionEncoding::Deflate)
            .say_hello(HelloRequest {
                name: format!("deflate {}", "d".repeat(1000)),
            })
            .await
            .unwrap();
        assert!(
            reply
                .extensions()
                .get::<volley::MessageCompressed>()
                .is_some(),
            "the grpcio server's reply was not compressed"
        );
        assert_eq!(
            reply.into_inner().message.len(),
            1008 + "Hello  from grpcio".len()
        );

        let status = client
            .say_hello(HelloRequest {
                name: "fail".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(status.message(), "python says no \u{263a}");
        assert_eq!(
            status
                .metadata()
                .get_bin("x-python-reason-bin")
                .unwrap()
                .unwrap()
                .as_ref(),
            &[0, 0xff]
        );
    })
    .await;
    drop(child.stdin.take());
    let _ = bounded(10, child.wait()).await;
    let _ = std::fs::remove_dir_all(stubs);
}

#[tokio::test]
#[ignore = "needs Python grpcio: run by scripts/test.sh"]
async fn grpcio_client_pinging_too_often_is_told_too_many_pings() {
    // Default policy: without calls, pings closer than 2 h are strikes.
    let (stdout, stderr) = grpcio_client_against_volley("keepalive_client.py", "keepalive").await;
    // Both calls succeed: the second reconnects after the GOAWAY.
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["first: Hello first", "second: Hello second"],
        "{stderr}"
    );
    // C-core read the GOAWAY's code and debug data (and throttles its keepalive).
    assert!(
        stderr.contains(
            r#"Received a GOAWAY with error code ENHANCE_YOUR_CALM and debug data equal to "too_many_pings""#
        ),
        "{stderr}"
    );
}

/// Runs grpcio-reflection's client against a server of `builder`'s services plus health and
/// both reflection services (describing `sets`), and checks that it lists `expected` and
/// resolves every service.
async fn grpcio_reflection_against(
    builder: volley::server::ServerBuilder,
    sets: &[&[u8]],
    expected: &[&str],
) {
    let mut reflection = volley_reflection::Builder::new()
        .register_encoded_file_descriptor_set(volley_health::FILE_DESCRIPTOR_SET);
    for set in sets {
        reflection = reflection.register_encoded_file_descriptor_set(set);
    }
    let reflection = reflection.build().unwrap();
    let (_reporter, health) = volley_health::health_service();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        builder
            .add_service(health)
            .add_service(reflection.v1())
            .add_service(reflection.v1alpha())
            .serve_with_listener(listener, async {
                let _ = stopped.await;
            }),
    );
    let addr = addr.to_string();
    let args: Vec<&str> = std::iter::once(addr.as_str())
        .chain(expected.iter().copied())
        .collect();
    let (stdout, _) = run_python("reflection_client.py", &args).await;
    for service in expected {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("service {service} "))),
            "{service} not resolved:\n{stdout}"
        );
    }
    let _ = stop.send(());
    bounded(10, server).await.unwrap().unwrap();
}

#[tokio::test]
#[ignore = "needs Python grpcio-reflection: run by scripts/test.sh"]
async fn grpcio_reflection_resolves_every_service_of_the_routeguide_server() {
    let builder = volley::Server::builder()
        .add_service(volley_examples::routeguide::RouteGuideServer::new(
            volley_examples::route_guide::RouteGuideService::default(),
        ))
        .add_service(GreeterServer::new(MyGreeter::default()));
    grpcio_reflection_against(
        builder,
        &[volley_examples::FILE_DESCRIPTOR_SET],
        &[
            "routeguide.RouteGuide",
            "helloworld.Greeter",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ],
    )
    .await;
}

#[tokio::test]
#[ignore = "needs Python grpcio-reflection: run by scripts/test.sh"]
async fn grpcio_reflection_resolves_every_service_of_the_interop_server() {
    let builder = volley::Server::builder().add_service(
        volley_interop::testing::TestServiceServer::new(volley_interop::service::InteropService),
    );
    grpcio_reflection_against(
        builder,
        &[volley_interop::FILE_DESCRIPTOR_SET],
        &[
            "grpc.testing.TestService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
        ],
    )
    .await;
}

/// A greeter that answers every call with a rich error: INVALID_ARGUMENT and a BadRequest.
struct RichErrorGreeter;

impl volley_examples::helloworld::Greeter for RichErrorGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<volley::Response<volley_examples::helloworld::HelloReply>, volley::Status> {
        use volley_types::{BadRequest, StatusExt, bad_request::FieldViolation};
        Err(volley::Status::with_error_details(
            Code::InvalidArgument,
            "bad name",
            [volley_types::detail(&BadRequest {
                field_violations: vec![FieldViolation {
                    field: "name".into(),
                    description: format!(
                        "volley wants another name than {:?}",
                        request.get_ref().name
                    ),
                    ..Default::default()
                }],
            })],
        ))
    }
}

#[tokio::test]
#[ignore = "needs Python grpcio-status: run by scripts/test.sh"]
async fn grpcio_status_reads_a_volley_servers_rich_error() {
    let (stdout, _) =
        grpcio_client_against(RichErrorGreeter, "rich_error_client.py", "rich-client").await;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "code 3",
            "message bad name",
            "violation name: volley wants another name than \"rich\"",
        ]
    );
}

#[tokio::test]
#[ignore = "needs Python grpcio-status: run by scripts/test.sh"]
async fn volley_client_reads_a_grpcio_servers_rich_error() {
    use volley_types::{BadRequest, StatusExt};
    let (mut child, port, stubs) = start_grpcio_greeter("rich-server").await;
    let client =
        GreeterClient::new(volley::Channel::new(&format!("http://127.0.0.1:{port}")).unwrap());
    let status = bounded(
        30,
        client.say_hello(HelloRequest {
            name: "rich".into(),
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status}");
    assert_eq!(status.message(), "bad name");
    let bad: BadRequest = status.get_detail().expect("a BadRequest detail");
    assert_eq!(bad.field_violations.len(), 1);
    assert_eq!(bad.field_violations[0].field, "name");
    assert_eq!(
        bad.field_violations[0].description,
        "python wants another name"
    );
    drop(child.stdin.take());
    let _ = bounded(10, child.wait()).await;
    let _ = std::fs::remove_dir_all(stubs);
}
