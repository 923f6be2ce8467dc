//! `volley` against Volley servers over loopback: list, describe, calls of all four kinds
//! (reflection and .proto schemas), an error with details and its exit code, and health.

// A test's unwrap is its assertion.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use volley::{Channel, Code, Server};
use volley_cli::call::{CallOptions, call};
use volley_cli::schema::SchemaSource;
use volley_cli::{ConnectOptions, Error, describe_symbol, list};
use volley_examples::route_guide::RouteGuideService;
use volley_examples::routeguide::RouteGuideServer;

async fn bounded<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("the test took too long")
}

/// The production example's server (greeter with rich errors, health, reflection) and a
/// route guide with reflection, on one port each.
struct Servers {
    greeter: SocketAddr,
    routes: SocketAddr,
    _stop: (oneshot::Sender<()>, oneshot::Sender<()>),
}

async fn servers() -> Servers {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let greeter = listener.local_addr().unwrap();
    let (stop_greeter, stopped) = oneshot::channel::<()>();
    tokio::spawn(volley_examples::production::serve(listener, async {
        let _ = stopped.await;
    }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let routes = listener.local_addr().unwrap();
    let (stop_routes, stopped) = oneshot::channel::<()>();
    let reflection = volley_reflection::Builder::new()
        .register_encoded_file_descriptor_set(volley_examples::FILE_DESCRIPTOR_SET)
        .build()
        .unwrap();
    tokio::spawn(
        Server::builder()
            .add_service(RouteGuideServer::new(RouteGuideService::default()))
            // v1alpha only: the CLI falls back to it.
            .add_service(reflection.v1alpha())
            .serve_with_listener(listener, async {
                let _ = stopped.await;
            }),
    );
    Servers {
        greeter,
        routes,
        _stop: (stop_greeter, stop_routes),
    }
}

fn channel(addr: SocketAddr) -> Channel {
    volley_cli::connect(
        &addr.to_string(),
        &ConnectOptions {
            plaintext: true,
            ..Default::default()
        },
    )
    .unwrap()
}

fn reflection() -> SchemaSource {
    SchemaSource::default()
}

async fn run_call(
    addr: SocketAddr,
    source: &SchemaSource,
    method: &str,
    data: Option<&str>,
    stdin: &'static [u8],
) -> Result<Vec<serde_json::Value>, Error> {
    let mut out = Vec::new();
    let options = CallOptions {
        data: data.map(str::to_owned),
        ..Default::default()
    };
    bounded(call(
        &channel(addr),
        source,
        method,
        options,
        tokio::io::BufReader::new(stdin),
        &mut out,
    ))
    .await?;
    Ok(String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect())
}

#[tokio::test]
async fn list_and_describe_through_reflection() {
    let s = servers().await;
    let services = bounded(list(Some(&channel(s.greeter)), &reflection(), None))
        .await
        .unwrap();
    for name in [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "helloworld.Greeter",
    ] {
        assert!(services.iter().any(|s| s == name), "{services:?}");
    }
    // The route guide server has only v1alpha reflection.
    let methods = bounded(list(
        Some(&channel(s.routes)),
        &reflection(),
        Some("routeguide.RouteGuide"),
    ))
    .await
    .unwrap();
    assert_eq!(
        methods,
        [
            "routeguide.RouteGuide.GetFeature (unary)",
            "routeguide.RouteGuide.ListFeatures (server streaming)",
            "routeguide.RouteGuide.RecordRoute (client streaming)",
            "routeguide.RouteGuide.RouteChat (bidi streaming)",
        ]
    );
    let service = bounded(describe_symbol(
        Some(&channel(s.routes)),
        &reflection(),
        "routeguide.RouteGuide",
    ))
    .await
    .unwrap();
    assert!(
        service.contains(
            "rpc RouteChat(stream routeguide.RouteNote) returns (stream routeguide.RouteNote);"
        ),
        "{service}"
    );
    let message = bounded(describe_symbol(
        Some(&channel(s.routes)),
        &reflection(),
        "routeguide.Feature",
    ))
    .await
    .unwrap();
    assert_eq!(
        message,
        "routeguide.Feature is a message:\nmessage Feature {\n  string name = 1;\n  routeguide.Point location = 2;\n}\n"
    );
    let method = bounded(describe_symbol(
        Some(&channel(s.greeter)),
        &reflection(),
        "helloworld.Greeter/SayHello",
    ))
    .await
    .unwrap();
    assert!(
        method.contains("rpc SayHello(helloworld.HelloRequest) returns (helloworld.HelloReply);"),
        "{method}"
    );
    let missing = bounded(describe_symbol(
        Some(&channel(s.greeter)),
        &reflection(),
        "no.Such",
    ))
    .await
    .unwrap_err();
    assert_eq!(missing.exit_code(), Code::NotFound as i32, "{missing}");
}

#[tokio::test]
async fn calls_of_all_four_kinds() {
    let s = servers().await;
    let unary = run_call(
        s.greeter,
        &reflection(),
        "helloworld.Greeter/SayHello",
        Some(r#"{"name": "cli"}"#),
        b"",
    )
    .await
    .unwrap();
    assert_eq!(unary, [serde_json::json!({"message": "Hello cli"})]);

    let feature = run_call(
        s.routes,
        &reflection(),
        "routeguide.RouteGuide/GetFeature",
        None,
        b"{\"latitude\": 407838351, \"longitude\": -746143763}\n",
    )
    .await
    .unwrap();
    assert_eq!(feature[0]["name"], "Patriots Path, Mendham, NJ 07945, USA");

    let listed = run_call(
        s.routes,
        &reflection(),
        "routeguide.RouteGuide.ListFeatures",
        Some(
            r#"{"lo": {"latitude": 400000000, "longitude": -750000000},
                "hi": {"latitude": 420000000, "longitude": -730000000}}"#,
        ),
        b"",
    )
    .await
    .unwrap();
    assert_eq!(listed.len(), 6, "{listed:?}");

    // A client stream from standard input, one point per line.
    let summary = run_call(
        s.routes,
        &reflection(),
        "routeguide.RouteGuide/RecordRoute",
        None,
        b"{\"latitude\": 407838351, \"longitude\": -746143763}\n\n{\"latitude\": 408122808, \"longitude\": -743999179}\n",
    )
    .await
    .unwrap();
    assert_eq!(summary[0]["pointCount"], 2);
    assert_eq!(summary[0]["featureCount"], 2);

    // Bidi: two notes at one place; the second is answered with the first.
    let notes = run_call(
        s.routes,
        &reflection(),
        "routeguide.RouteGuide/RouteChat",
        Some(
            r#"{"location": {"latitude": 1, "longitude": 2}, "message": "first"}
               {"location": {"latitude": 1, "longitude": 2}, "message": "second"}"#,
        ),
        b"",
    )
    .await
    .unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0]["message"], "first");
}

#[tokio::test]
async fn schemas_from_proto_files_and_bad_input() {
    let s = servers().await;
    let protos = SchemaSource {
        protos: vec!["route_guide.proto".into()],
        import_paths: vec![concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/proto").into()],
        protoset: None,
    };
    let feature = run_call(
        s.routes,
        &protos,
        "routeguide.RouteGuide/GetFeature",
        Some(r#"{"latitude": 407838351, "longitude": -746143763}"#),
        b"",
    )
    .await
    .unwrap();
    assert_eq!(feature[0]["name"], "Patriots Path, Mendham, NJ 07945, USA");
    let services = bounded(list(Some(&channel(s.routes)), &protos, None))
        .await
        .unwrap();
    assert_eq!(services, ["routeguide.RouteGuide"]);
    // A field the message does not have is a usage error (exit code 2), before any call.
    let bad = run_call(
        s.routes,
        &protos,
        "routeguide.RouteGuide/GetFeature",
        Some(r#"{"lat": 1}"#),
        b"",
    )
    .await
    .unwrap_err();
    assert_eq!(bad.exit_code(), 2, "{bad}");
}

#[tokio::test]
async fn the_binary_exits_with_the_status_code_and_prints_the_details() {
    let s = servers().await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_volley"))
        .args([
            "call",
            &s.greeter.to_string(),
            "helloworld.Greeter/SayHello",
            "-d",
            r#"{"name": ""}"#,
            "--plaintext",
        ])
        .output();
    let output = bounded(output).await.unwrap();
    assert_eq!(output.status.code(), Some(Code::InvalidArgument as i32));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("Code: INVALID_ARGUMENT"), "{err}");
    assert!(err.contains("google.rpc.BadRequest"), "{err}");
    assert!(err.contains("give a name to greet"), "{err}");

    let ok = tokio::process::Command::new(env!("CARGO_BIN_EXE_volley"))
        .args([
            "call",
            &s.greeter.to_string(),
            "helloworld.Greeter/SayHello",
            "-d",
            r#"{"name": "bin"}"#,
            "-H",
            "x-trace: 1",
            "-v",
            "--plaintext",
        ])
        .output();
    let ok = bounded(ok).await.unwrap();
    assert_eq!(ok.status.code(), Some(0));
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(out.contains(r#"{"message":"Hello bin"}"#), "{out}");
    assert!(
        out.contains("Response headers:") && out.contains("Response trailers:"),
        "{out}"
    );
}

/// Runs the binary with `args`; (exit code, stdout, stderr).
async fn volley<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (Option<i32>, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_volley"))
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = bounded(output).await.unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn list_and_describe_need_no_server_when_the_schema_is_in_files() {
    let protos = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/proto");
    let proto = ["--proto", "route_guide.proto", "--import-path", protos];
    let (code, out, err) = volley(&[&["list"][..], &proto].concat()).await;
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "routeguide.RouteGuide\n"),
        "{err}"
    );
    let (code, out, err) = volley(&[&["list", "routeguide.RouteGuide"][..], &proto].concat()).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("routeguide.RouteGuide.RouteChat (bidi streaming)"),
        "{out}"
    );
    let (code, out, err) = volley(&[&["describe", "routeguide.Point"][..], &proto].concat()).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("message Point {") && out.contains("int32 latitude = 1;"),
        "{out}"
    );
    // An address given anyway is not needed, and nothing listens there.
    let (code, out, err) =
        volley(&[&["describe", "127.0.0.1:1", "routeguide.Point"][..], &proto].concat()).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("message Point {"), "{out}");
    // Without files the schema comes from reflection, which needs the address.
    let (code, _, err) = volley(&["describe", "routeguide.Point", "--plaintext"]).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no server address"), "{err}");
}

#[tokio::test]
async fn health_watch_prints_each_change_until_the_server_ends_the_stream() {
    use tokio::io::AsyncBufReadExt;
    let (reporter, health) = volley_health::health_service();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(
        Server::builder()
            .add_service(health)
            .serve_with_listener(listener, async {
                let _ = stopped.await;
            }),
    );
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_volley"))
        .args([
            "health",
            &addr,
            "--service",
            "svc",
            "--watch",
            "--plaintext",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || bounded(lines.next_line()).await.unwrap();
    // Not yet known, then each change as the reporter makes it.
    assert_eq!(next().await.as_deref(), Some("SERVICE_UNKNOWN"));
    reporter.set_serving("svc");
    assert_eq!(next().await.as_deref(), Some("SERVING"));
    reporter.set_not_serving("svc");
    assert_eq!(next().await.as_deref(), Some("NOT_SERVING"));
    reporter.set_serving("svc");
    assert_eq!(next().await.as_deref(), Some("SERVING"));
    // A draining server says NOT_SERVING and ends the stream: exit code 4 (unhealthy).
    reporter.shutdown();
    assert_eq!(next().await.as_deref(), Some("NOT_SERVING"));
    assert_eq!(next().await, None);
    let status = bounded(child.wait()).await.unwrap();
    assert_eq!(status.code(), Some(volley_cli::health::UNHEALTHY));
}

/// Volley's interop service (with reflection v1) on `builder`, on a port of its own; it
/// stops when the sender is dropped.
async fn interop_server(builder: volley::ServerBuilder) -> (String, oneshot::Sender<()>) {
    use volley_interop::testing::TestServiceServer;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let reflection = volley_reflection::Builder::new()
        .register_encoded_file_descriptor_set(volley_interop::FILE_DESCRIPTOR_SET)
        .build()
        .unwrap();
    tokio::spawn(
        builder
            .add_service(TestServiceServer::new(
                volley_interop::service::InteropService,
            ))
            .add_service(reflection.v1())
            .serve_with_listener(listener, async {
                let _ = stopped.await;
            }),
    );
    (addr, stop)
}

/// The lean engine against a server that allows 4 streams per connection and small
/// windows: 20 calls in flight queue for stream slots, and requests and responses larger
/// than the windows go through under flow control.
#[tokio::test]
async fn the_lean_engine_keeps_to_stream_limits_and_flow_control() {
    let builder = Server::builder()
        .max_concurrent_streams(4)
        .initial_stream_window_size(16 * 1024)
        .initial_connection_window_size(64 * 1024);
    let (addr, _stop) = interop_server(builder).await;
    let unary = bench_json(&[
        &addr,
        "grpc.testing.TestService/UnaryCall",
        "-d",
        r#"{"responseSize": 1}"#,
        "-n",
        "200",
        "-c",
        "20",
    ])
    .await;
    assert_eq!(unary["status_codes"]["OK"], 200, "{unary}");
    // 3 requests of 96 KiB each (above the 16 KiB stream window), 200 KiB responses.
    let body = "A".repeat(96 * 1024 * 4 / 3);
    let data = format!(
        r#"{{"payload": {{"body": "{body}"}}, "responseParameters": [{{"size": 204800}}]}}"#
    );
    let three = [data.as_str(), data.as_str(), data.as_str()].join(" ");
    // Too long for a command-line argument: from a file.
    let file = std::env::temp_dir().join(format!("volley-lean-{}.json", std::process::id()));
    std::fs::write(&file, &three).unwrap();
    let three = format!("@{}", file.display());
    let bidi = bench_json(&[
        &addr,
        "grpc.testing.TestService/FullDuplexCall",
        "-d",
        &three,
        "-n",
        "12",
        "-c",
        "6",
    ])
    .await;
    assert_eq!(bidi["status_codes"]["OK"], 12, "{bidi}");
    let payloads = format!(r#"{{"payload": {{"body": "{body}"}}}}"#).repeat(3);
    std::fs::write(&file, payloads).unwrap();
    let input = bench_json(&[
        &addr,
        "grpc.testing.TestService/StreamingInputCall",
        "-d",
        &three,
        "-n",
        "12",
        "-c",
        "6",
    ])
    .await;
    assert_eq!(input["status_codes"]["OK"], 12, "{input}");
    let _ = std::fs::remove_file(file);

    // A peer that accepts and never speaks HTTP/2: the connect timeout ends the run.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let _held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let args = [
        "bench",
        &silent_addr,
        "helloworld.Greeter/SayHello",
        "--proto",
        "helloworld.proto",
        "--import-path",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/proto"),
        "--plaintext",
        "--connect-timeout",
        "0.5",
    ];
    let (code, _, err) = volley(&args).await;
    assert_eq!(code, Some(Code::Unavailable as i32), "{err}");
    assert!(err.contains("no HTTP/2 connection"), "{err}");
}

/// The binary against Volley's interop server (TLS with the interop test CA, reflection v1):
/// each kind of call, echoed metadata, a requested error status, a bench run.
#[tokio::test]
async fn the_binary_against_the_interop_server() {
    let builder = Server::builder()
        .tls_config(
            volley::ServerTlsConfig::new().identity(volley::Identity::from_pem(
                volley_interop::SERVER_CERT,
                volley_interop::SERVER_KEY,
            )),
        )
        .unwrap();
    let (addr, _stop) = interop_server(builder).await;
    let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/../../interop/certs/ca.pem");
    let tls = ["--cacert", ca, "--servername", "foo.test.google.fr"];
    let with =
        |args: &[&str]| -> Vec<String> { args.iter().chain(&tls).map(|a| a.to_string()).collect() };
    let service = "grpc.testing.TestService";

    let (code, out, err) = volley(&with(&["list", &addr, service])).await;
    assert_eq!(code, Some(0), "{err}");
    for line in [
        "grpc.testing.TestService.EmptyCall (unary)",
        "grpc.testing.TestService.StreamingInputCall (client streaming)",
        "grpc.testing.TestService.StreamingOutputCall (server streaming)",
        "grpc.testing.TestService.FullDuplexCall (bidi streaming)",
    ] {
        assert!(out.lines().any(|l| l == line), "{line} in {out}");
    }
    // Unary, with metadata the server echoes into the response headers and trailers.
    let (code, out, err) = volley(&with(&[
        "call",
        &addr,
        "grpc.testing.TestService/UnaryCall",
        "-d",
        r#"{"responseSize": 3, "payload": {"body": "AAEC"}}"#,
        "-H",
        "x-grpc-test-echo-initial: hello",
        "-H",
        "x-grpc-test-echo-trailing-bin: AAEC",
        "-v",
    ]))
    .await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(r#"{"payload":{"body":"AAAA"}}"#), "{out}");
    assert!(out.contains("x-grpc-test-echo-initial: hello"), "{out}");
    assert!(out.contains("x-grpc-test-echo-trailing-bin: AAEC"), "{out}");
    // Server streaming: one JSON line per response.
    let (code, out, err) = volley(&with(&[
        "call",
        &addr,
        "grpc.testing.TestService/StreamingOutputCall",
        "-d",
        r#"{"responseParameters": [{"size": 1}, {"size": 2}, {"size": 3}]}"#,
    ]))
    .await;
    assert_eq!(code, Some(0), "{err}");
    let sizes: Vec<usize> = out
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let body = v["payload"]["body"].as_str().unwrap_or("");
            base64_len(body)
        })
        .collect();
    assert_eq!(sizes, [1, 2, 3], "{out}");
    // Client streaming: the request sizes add up.
    let (code, out, err) = volley(&with(&[
        "call",
        &addr,
        "grpc.testing.TestService/StreamingInputCall",
        "-d",
        r#"{"payload": {"body": "AAAA"}} {"payload": {"body": "AAAAAAAA"}}"#,
    ]))
    .await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), r#"{"aggregatedPayloadSize":9}"#);
    // An error status the request asks for: the exit code is its code.
    let (code, _, err) = volley(&with(&[
        "call",
        &addr,
        "grpc.testing.TestService/UnaryCall",
        "-d",
        r#"{"responseStatus": {"code": 2, "message": "test status message"}}"#,
    ]))
    .await;
    assert_eq!(code, Some(Code::Unknown as i32), "{err}");
    assert!(err.contains("test status message"), "{err}");
    // A short bench of the bidi method, as JSON.
    let (code, out, err) = volley(&with(&[
        "bench",
        &addr,
        "grpc.testing.TestService/FullDuplexCall",
        "-d",
        r#"{"responseParameters": [{"size": 1}]}"#,
        "-n",
        "40",
        "-c",
        "4",
        "--format",
        "json",
    ]))
    .await;
    assert_eq!(code, Some(0), "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["count"], 40, "{out}");
    assert_eq!(report["status_codes"]["OK"], 40, "{out}");
}

/// The decoded length of standard base64 text.
fn base64_len(text: &str) -> usize {
    text.len() / 4 * 3 - text.matches('=').count()
}

#[tokio::test]
async fn health_exits_zero_only_when_serving() {
    let s = servers().await;
    let check = |service: &'static str, addr: SocketAddr| async move {
        let mut out = Vec::new();
        let code = volley_cli::health::health(
            &channel(addr),
            service,
            false,
            Duration::from_secs(5),
            &mut out,
        )
        .await;
        (code, String::from_utf8(out).unwrap())
    };
    assert_eq!(
        bounded(check("helloworld.Greeter", s.greeter)).await,
        (0, "SERVING\n".to_owned())
    );
    let (code, out) = bounded(check("no.Such", s.greeter)).await;
    assert_eq!(code, volley_cli::health::RPC_FAILED, "{out}");
    // A server without the health service: the check fails (UNIMPLEMENTED).
    let (code, _) = bounded(check("", s.routes)).await;
    assert_eq!(code, volley_cli::health::RPC_FAILED);
    // Nothing listening: the connection fails.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let (code, _) = bounded(check("", addr)).await;
    assert_eq!(code, volley_cli::health::CONNECTION_FAILED);
}

/// A grpcio server (tests/python/server.py) with reflection and health; stopped when
/// dropped (its standard input closes, and the process is killed).
struct Grpcio {
    addr: SocketAddr,
    _child: tokio::process::Child,
    gen_dir: std::path::PathBuf,
}

impl Drop for Grpcio {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.gen_dir);
    }
}

async fn grpcio_server() -> Grpcio {
    use tokio::io::AsyncBufReadExt;
    let python = std::env::var("VOLLEY_PYTHON")
        .expect("VOLLEY_PYTHON must name a python with grpcio; scripts/test.sh sets it up");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let gen_dir = std::env::temp_dir().join(format!("volley-cli-py-{}", std::process::id()));
    std::fs::create_dir_all(&gen_dir).unwrap();
    let protos = root.join("examples/proto");
    let status = tokio::process::Command::new(&python)
        .args(["-m", "grpc_tools.protoc"])
        .arg(format!("-I{}", protos.display()))
        .arg(format!("--python_out={}", gen_dir.display()))
        .arg(format!("--grpc_python_out={}", gen_dir.display()))
        .arg(protos.join("helloworld.proto"))
        .arg(protos.join("route_guide.proto"))
        .status();
    assert!(
        bounded(status).await.unwrap().success(),
        "grpc_tools.protoc failed"
    );
    let mut child = tokio::process::Command::new(&python)
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/server.py"))
        .arg(&gen_dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let port: u16 = bounded(lines.next_line())
        .await
        .unwrap()
        .expect("the server prints its port")
        .trim()
        .parse()
        .unwrap();
    Grpcio {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        _child: child,
        gen_dir,
    }
}

#[tokio::test]
#[ignore = "needs Python grpcio, grpcio-reflection, grpcio-health-checking (VOLLEY_PYTHON): run by scripts/test.sh"]
async fn every_subcommand_against_a_grpcio_server() {
    let py = grpcio_server().await;
    let services = bounded(list(Some(&channel(py.addr)), &reflection(), None))
        .await
        .unwrap();
    for name in [
        "grpc.health.v1.Health",
        "helloworld.Greeter",
        "routeguide.RouteGuide",
    ] {
        assert!(services.iter().any(|s| s == name), "{services:?}");
    }
    let methods = bounded(list(
        Some(&channel(py.addr)),
        &reflection(),
        Some("routeguide.RouteGuide"),
    ))
    .await
    .unwrap();
    assert_eq!(methods.len(), 4, "{methods:?}");
    let described = bounded(describe_symbol(
        Some(&channel(py.addr)),
        &reflection(),
        "routeguide.RouteSummary",
    ))
    .await
    .unwrap();
    assert!(described.contains("int32 point_count = 1;"), "{described}");

    let hello = run_call(
        py.addr,
        &reflection(),
        "helloworld.Greeter/SayHello",
        Some(r#"{"name": "cli"}"#),
        b"",
    )
    .await
    .unwrap();
    assert_eq!(hello[0]["message"], "Hello cli from grpcio");
    let feature = run_call(
        py.addr,
        &reflection(),
        "routeguide.RouteGuide/GetFeature",
        Some(r#"{"latitude": 407838351, "longitude": -746143763}"#),
        b"",
    )
    .await
    .unwrap();
    assert_eq!(feature[0]["name"], "Patriots Path, Mendham, NJ 07945, USA");
    let listed = run_call(
        py.addr,
        &reflection(),
        "routeguide.RouteGuide/ListFeatures",
        Some("{}"),
        b"",
    )
    .await
    .unwrap();
    assert_eq!(listed.len(), 2);
    let summary = run_call(
        py.addr,
        &reflection(),
        "routeguide.RouteGuide/RecordRoute",
        None,
        b"{\"latitude\": 407838351, \"longitude\": -746143763}\n{\"latitude\": 1, \"longitude\": 1}\n",
    )
    .await
    .unwrap();
    assert_eq!(summary[0]["pointCount"], 2);
    assert_eq!(summary[0]["featureCount"], 1);
    let chat = run_call(
        py.addr,
        &reflection(),
        "routeguide.RouteGuide/RouteChat",
        None,
        b"{\"message\": \"a\"}\n{\"message\": \"b\"}\n",
    )
    .await
    .unwrap();
    let echoed: Vec<_> = chat.iter().map(|n| n["message"].clone()).collect();
    assert_eq!(echoed, ["echo a", "echo b"]);

    // The binary against grpcio: its rich error, decoded, and the exit code.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_volley"))
        .args([
            "call",
            &py.addr.to_string(),
            "helloworld.Greeter/SayHello",
            "-d",
            "{}",
            "--plaintext",
        ])
        .output();
    let output = bounded(output).await.unwrap();
    assert_eq!(output.status.code(), Some(Code::InvalidArgument as i32));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("python wants a name"), "{err}");

    let check = |service: &'static str| {
        let channel = channel(py.addr);
        async move {
            let mut out = Vec::new();
            let code = volley_cli::health::health(
                &channel,
                service,
                false,
                Duration::from_secs(5),
                &mut out,
            )
            .await;
            (code, String::from_utf8(out).unwrap())
        }
    };
    assert_eq!(
        bounded(check("helloworld.Greeter")).await,
        (0, "SERVING\n".to_owned())
    );
    assert_eq!(
        bounded(check("routeguide.RouteGuide")).await,
        (volley_cli::health::UNHEALTHY, "NOT_SERVING\n".to_owned())
    );

    // A short load: every call counted, all OK.
    let load = bench_json(&[
        &py.addr.to_string(),
        "helloworld.Greeter/SayHello",
        "-d",
        r#"{"name": "load"}"#,
        "-n",
        "40",
        "-c",
        "4",
    ])
    .await;
    assert_eq!(load["count"], 40, "{load}");
    assert_eq!(load["status_codes"]["OK"], 40, "{load}");
    let load = bench_json(&[
        &py.addr.to_string(),
        "helloworld.Greeter/SayHello",
        "-d",
        r#"{"name": "load"}"#,
        "-n",
        "40",
        "-c",
        "4",
        "--client",
    ])
    .await;
    assert_eq!(load["status_codes"]["OK"], 40, "{load}");
}

/// Runs `volley bench ... --format json --plaintext` and parses its summary (the lean
/// engine loads host:port targets unless `--client` is among the arguments).
async fn bench_json(args: &[&str]) -> serde_json::Value {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_volley"))
        .arg("bench")
        .args(args)
        .args(["--format", "json", "--plaintext"])
        .output();
    let output = bounded(output).await.unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn bench_counts_every_call_in_both_loops_and_every_kind() {
    bench_scenarios(&[]).await;
}

#[tokio::test]
async fn bench_through_volleys_client_counts_the_same() {
    bench_scenarios(&["--client"]).await;
}

/// Closed and open loop, failures, and streaming methods; `generator` picks the engine.
async fn bench_scenarios(generator: &[&str]) {
    let s = servers().await;
    let greeter = s.greeter.to_string();
    let bench_json = async |args: &[&str]| bench_json(&[args, generator].concat()).await;
    let closed = bench_json(&[
        &greeter,
        "helloworld.Greeter/SayHello",
        "-d",
        r#"{"name": "load"}"#,
        "-n",
        "300",
        "-c",
        "8",
        "--connections",
        "2",
        "--warmup",
        "10",
    ])
    .await;
    assert_eq!(closed["count"], 300, "{closed}");
    assert_eq!(closed["status_codes"]["OK"], 300, "{closed}");
    assert!(closed["rps"].as_f64().unwrap() > 0.0);
    assert_eq!(closed["latency_distribution"].as_array().unwrap().len(), 8);
    let in_histogram: u64 = closed["histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(in_histogram, 300, "{closed}");

    // Failures are counted by code and message.
    let failing = bench_json(&[
        &greeter,
        "helloworld.Greeter/SayHello",
        "-n",
        "20",
        "-c",
        "4",
    ])
    .await;
    assert_eq!(failing["status_codes"]["INVALID_ARGUMENT"], 20, "{failing}");
    assert_eq!(
        failing["errors"]["INVALID_ARGUMENT: name must not be empty"], 20,
        "{failing}"
    );

    // Open loop: 50 calls at 200 per second take about a quarter of a second.
    let open = bench_json(&[
        &greeter,
        "helloworld.Greeter/SayHello",
        "-d",
        r#"{"name": "paced"}"#,
        "-n",
        "50",
        "--rps",
        "200",
        "-c",
        "4",
    ])
    .await;
    assert_eq!(open["count"], 50, "{open}");
    assert!(open["total_ms"].as_f64().unwrap() >= 240.0, "{open}");

    // Streaming methods: each call reads its whole response stream.
    let routes = s.routes.to_string();
    let streams = bench_json(&[
        &routes,
        "routeguide.RouteGuide/ListFeatures",
        "-d",
        r#"{"lo": {"latitude": 400000000, "longitude": -750000000},
            "hi": {"latitude": 420000000, "longitude": -730000000}}"#,
        "-n",
        "20",
        "-c",
        "2",
    ])
    .await;
    assert_eq!(streams["status_codes"]["OK"], 20, "{streams}");
    let bidi = bench_json(&[
        &routes,
        "routeguide.RouteGuide/RouteChat",
        "-d",
        r#"{"message": "a"} {"message": "b"}"#,
        "-z",
        "0.3",
        "-c",
        "2",
    ])
    .await;
    assert!(bidi["count"].as_u64().unwrap() > 0, "{bidi}");
    assert_eq!(bidi["status_codes"]["OK"], bidi["count"], "{bidi}");
}

#[tokio::test]
async fn tls_verifies_the_server_unless_insecure() {
    let certs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop/certs");
    let read = |name: &str| std::fs::read(certs.join(name)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stopped) = oneshot::channel::<()>();
    let (health_reporter, health) = volley_health::health_service();
    health_reporter.set_serving("");
    tokio::spawn(
        Server::builder()
            .tls_config(
                volley::ServerTlsConfig::new().identity(volley::Identity::from_pem(
                    read("server1.pem"),
                    read("server1.key"),
                )),
            )
            .unwrap()
            .add_service(health)
            .serve_with_listener(listener, async {
                let _ = stopped.await;
            }),
    );
    let check = |options: ConnectOptions| async move {
        let channel = volley_cli::connect(&addr.to_string(), &options).unwrap();
        let mut out = Vec::new();
        let code =
            volley_cli::health::health(&channel, "", false, Duration::from_secs(5), &mut out).await;
        (code, String::from_utf8(out).unwrap())
    };
    let connect_timeout = Some(Duration::from_secs(3));
    // The server's certificate is signed by the interop test CA, which nobody trusts here.
    let (code, out) = bounded(check(ConnectOptions {
        connect_timeout,
        ..Default::default()
    }))
    .await;
    assert_eq!(code, volley_cli::health::CONNECTION_FAILED, "{out}");
    // Trusting that CA, with the name the certificate is for.
    let (code, out) = bounded(check(ConnectOptions {
        cacert: Some(certs.join("ca.pem")),
        servername: Some("foo.test.google.fr".into()),
        connect_timeout,
        ..Default::default()
    }))
    .await;
    assert_eq!(code, 0, "{out}");
    // --insecure: any certificate, any name.
    let (code, out) = bounded(check(ConnectOptions {
        insecure: true,
        connect_timeout,
        ..Default::default()
    }))
    .await;
    assert_eq!(code, 0, "{out}");
}
