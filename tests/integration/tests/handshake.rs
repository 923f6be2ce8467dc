//! Connections that never finish their handshake are closed after the server's
//! `handshake_timeout`, over TCP and TLS, while well-behaved clients are served meanwhile; a
//! connection that did finish it (preface and SETTINGS) stays open however quiet it is.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use volley::{Identity, ServerTlsConfig};
use volley_integration_tests::echo::EchoRequest;
use volley_integration_tests::pem::{rustls_certs, test_cert_file};
use volley_integration_tests::{TestServer, bounded};

const TIMEOUT: Duration = Duration::from_millis(300);
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame.
const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
/// A PING frame with eight bytes of opaque data.
const PING: &[u8] = &[0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];

/// Reads until the server closes the connection; returns how long that took.
async fn closed_after<S: tokio::io::AsyncRead + Unpin>(mut io: S, since: Instant) -> Duration {
    let mut buf = [0u8; 4096];
    loop {
        match io.read(&mut buf).await {
            Ok(0) | Err(_) => return since.elapsed(),
            Ok(_) => {}
        }
    }
}

async fn served(server: &TestServer) {
    let reply = server
        .client()
        .unary(EchoRequest {
            message: "still here".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(reply.get_ref().message, "still here");
}

#[tokio::test]
async fn silent_and_preface_only_connections_are_closed_after_the_handshake_timeout() {
    let server = TestServer::start_with(|b| b.handshake_timeout(TIMEOUT)).await;
    let start = Instant::now();
    let mut waits = Vec::new();
    for i in 0..40 {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        match i % 4 {
            0 => {}                                            // nothing at all
            1 => tcp.write_all(&PREFACE[..10]).await.unwrap(), // part of the preface
            2 => tcp.write_all(PREFACE).await.unwrap(),        // the preface, no SETTINGS
            _ => {
                // The preface and a PING: the first frame must be SETTINGS; h2 refuses it.
                tcp.write_all(PREFACE).await.unwrap();
                tcp.write_all(PING).await.unwrap();
            }
        }
        waits.push(tokio::spawn(closed_after(tcp, start)));
    }
    // A client that speaks properly is served while those wait.
    bounded(5, served(&server)).await;
    for wait in waits {
        let took = bounded(5, wait).await.unwrap();
        assert!(
            took < TIMEOUT + Duration::from_secs(2),
            "closed after {took:?}"
        );
    }
    // And still is afterwards.
    bounded(5, served(&server)).await;
}

#[tokio::test]
async fn a_connection_that_finished_its_handshake_may_stay_quiet() {
    let server = TestServer::start_with(|b| b.handshake_timeout(TIMEOUT)).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(PREFACE).await.unwrap();
    tcp.write_all(SETTINGS).await.unwrap();
    // Nothing to await: the point is that time passes beyond the timeout.
    tokio::time::sleep(TIMEOUT * 3).await;
    tcp.write_all(PING).await.unwrap();
    // The server's SETTINGS, its ACK of ours, then the PING's ACK: find the ACK frame.
    let mut seen = Vec::new();
    let ack = bounded(5, async {
        let mut buf = [0u8; 1024];
        loop {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "the server closed a connection that had finished its handshake"
            );
            seen.extend_from_slice(&buf[..n]);
            if let Some(at) = seen.windows(5).position(|w| w == [0, 0, 8, 6, 1]) {
                return seen[at + 9..].len() >= 8;
            }
        }
    })
    .await;
    assert!(ack);
}

#[tokio::test]
async fn the_timeout_covers_the_tls_handshake_and_the_preface_after_it() {
    let read = test_cert_file;
    let identity = Identity::from_pem(read("server1.pem"), read("server1.key"));
    let server = TestServer::start_with(|b| {
        b.handshake_timeout(TIMEOUT)
            .tls_config(ServerTlsConfig::new().identity(identity))
            .unwrap()
    })
    .await;
    let start = Instant::now();
    // No TLS ClientHello at all.
    let silent = TcpStream::connect(server.addr).await.unwrap();
    // A complete TLS handshake (ALPN h2), then nothing inside it.
    let mut roots = rustls::RootCertStore::empty();
    let ca = read("ca.pem");
    for cert in rustls_certs(&ca) {
        roots.add(cert).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("foo.test.google.fr").unwrap();
    let tls = bounded(5, connector.connect(name, tcp)).await.unwrap();
    for took in [
        bounded(5, closed_after(silent, start)).await,
        bounded(5, closed_after(tls, start)).await,
    ] {
        assert!(took >= TIMEOUT / 2, "closed after only {took:?}");
        assert!(
            took < TIMEOUT + Duration::from_secs(2),
            "closed after {took:?}"
        );
    }
}
