//! `volley-interop-server --port=P [--use_tls=true]`: gRPC's interop TestService, flag-compatible
//! with the official servers. Runs until killed (SIGTERM or Ctrl-C shut it down gracefully).

use std::net::{Ipv6Addr, SocketAddr};

use volley::{CompressionEncoding, Identity, Server, ServerTlsConfig};
use volley_interop::flags::Flags;
use volley_interop::service::InteropService;
use volley_interop::testing::TestServiceServer;

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("volley-interop-server: {e}");
        std::process::exit(2);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let flags = Flags::parse(std::env::args().skip(1))?;
    let port: u16 = flags.int("port", 0)?;
    if port == 0 {
        return Err("--port is required".into());
    }
    // Responses are compressed when the client accepts gzip and the request asks for it
    // (response_compressed); the handlers switch compression per message.
    let mut builder = Server::builder().send_compressed(CompressionEncoding::Gzip);
    if flags.bool("use_tls", false)? {
        let identity = Identity::from_pem(volley_interop::SERVER_CERT, volley_interop::SERVER_KEY);
        builder = builder.tls_config(ServerTlsConfig::new().identity(identity))?;
    }
    // Like the official servers: every address, IPv6 and IPv4.
    let addr = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(_) => tokio::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port))).await?,
    };
    eprintln!("volley-interop-server listening on port {port}");
    // Health and reflection too, so that grpcurl and health probes can be pointed at it.
    let (health_reporter, health) = volley_health::health_service();
    let reflection = volley_reflection::Builder::new()
        .register_encoded_file_descriptor_set(volley_interop::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(volley_health::FILE_DESCRIPTOR_SET)
        .build()?;
    builder
        .add_service(TestServiceServer::new(InteropService))
        .add_service(health)
        .add_service(reflection.v1())
        .add_service(reflection.v1alpha())
        .serve_with_listener(listener, health_reporter.shutdown_on(shutdown_signal()))
        .await?;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
