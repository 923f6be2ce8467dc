//! TLS over loopback with gRPC's test certificates: server identity, CA roots, the server-name
//! override, mutual TLS, and failures that must be UNAVAILABLE with a reason.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use volley::{Certificate, Channel, ClientTlsConfig, Code, Identity, ServerTlsConfig};
use volley_integration_tests::echo::{EchoClient, EchoRequest};
use volley_integration_tests::pem::{pem_body, rustls_certs};
use volley_integration_tests::{TestServer, bounded};

const CERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../interop/certs");

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{CERTS}/{name}")).unwrap()
}

fn server_identity() -> Identity {
    Identity::from_pem(read("server1.pem"), read("server1.key"))
}

fn test_ca() -> Certificate {
    Certificate::from_pem(read("ca.pem"))
}

async fn tls_server(config: ServerTlsConfig) -> TestServer {
    TestServer::start_with(|b| b.tls_config(config).unwrap()).await
}

fn client(server: &TestServer, tls: ClientTlsConfig) -> EchoClient {
    let channel = Channel::builder(&format!("ipv4:{}", server.addr))
        .tls_config(tls)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    EchoClient::new(channel)
}

#[tokio::test]
async fn a_call_over_tls_with_the_test_ca_and_a_name_override() {
    let server = tls_server(ServerTlsConfig::new().identity(server_identity())).await;
    let client = client(
        &server,
        ClientTlsConfig::new()
            .ca_certificate(test_ca())
            .domain_name("foo.test.google.fr"),
    );
    let reply = bounded(
        10,
        client.unary(EchoRequest {
            message: "secret".into(),
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    assert_eq!(reply.get_ref().message, "secret");
}

#[tokio::test]
async fn a_certificate_for_another_name_is_unavailable() {
    let server = tls_server(ServerTlsConfig::new().identity(server_identity())).await;
    // 127.0.0.1 is not among the certificate's names.
    let client = client(&server, ClientTlsConfig::new().ca_certificate(test_ca()));
    let status = bounded(10, client.unary(EchoRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status}");
    assert!(status.message().contains("TLS handshake"), "{status}");
    assert!(status.message().contains("certificate"), "{status}");
}

#[tokio::test]
async fn an_untrusted_ca_is_unavailable() {
    let server = tls_server(ServerTlsConfig::new().identity(server_identity())).await;
    // The system roots do not include gRPC's test CA.
    let client = client(
        &server,
        ClientTlsConfig::new().domain_name("foo.test.google.fr"),
    );
    let status = bounded(10, client.unary(EchoRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status}");
    assert!(status.message().contains("certificate"), "{status}");
}

#[tokio::test]
async fn mutual_tls_requires_the_client_certificate() {
    let server = tls_server(
        ServerTlsConfig::new()
            .identity(server_identity())
            .client_ca_root(test_ca()),
    )
    .await;
    let base = ClientTlsConfig::new()
        .ca_certificate(test_ca())
        .domain_name("foo.test.google.fr");
    let with_cert = client(
        &server,
        base.clone().identity(Identity::from_pem(
            read("client-v3.pem"),
            read("client-v3.key"),
        )),
    );
    bounded(10, with_cert.unary(EchoRequest::default()))
        .await
        .unwrap();
    let without = client(&server, base);
    let status = bounded(10, without.unary(EchoRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status}");
}

#[tokio::test]
async fn plaintext_and_tls_do_not_mix() {
    let server = tls_server(ServerTlsConfig::new().identity(server_identity())).await;
    let plaintext = EchoClient::new(
        Channel::builder(&format!("ipv4:{}", server.addr))
            .build()
            .unwrap(),
    );
    let status = bounded(10, plaintext.unary(EchoRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status}");

    let plain_server = TestServer::start().await;
    let tls_client = client(
        &plain_server,
        ClientTlsConfig::new()
            .ca_certificate(test_ca())
            .domain_name("foo.test.google.fr"),
    );
    let status = bounded(10, tls_client.unary(EchoRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status}");
}

#[tokio::test]
async fn a_server_that_does_not_negotiate_h2_is_refused() {
    // A TLS server with the right certificate but no ALPN.
    let certs = rustls_certs(&read("server1.pem"));
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        pem_body(&read("server1.key")),
    ));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let mut sink = Vec::new();
                    let _ = tokio::io::AsyncReadExt::read_to_end(&mut tls, &mut sink).await;
                }
            });
        }
    });
    let channel = Channel::builder(&format!("ipv4:{addr}"))
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(test_ca())
                .domain_name("foo.test.google.fr"),
        )
        .build()
        .unwrap();
    let status = bounded(10, EchoClient::new(channel).unary(EchoRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status}");
    assert!(status.message().contains("ALPN"), "{status}");
    server.abort();
}
