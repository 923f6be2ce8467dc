//! The transport's edges: a server that serves any stream of connections
//! (`serve_with_incoming`), a channel that dials through a connector of the program's own,
//! and the in-memory transport (`volley::testing::in_memory`) that joins the two without
//! sockets.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use volley::{BoxIo, Channel, Request};
use volley_integration_tests::bounded;
use volley_integration_tests::echo::{EchoClient, EchoRequest, EchoServer};

fn echo_server() -> volley::ServerBuilder {
    let (events, _) = mpsc::unbounded_channel();
    volley::Server::builder().add_service(EchoServer::new(volley_integration_tests::EchoService {
        events,
    }))
}

fn message(text: &str) -> EchoRequest {
    EchoRequest {
        message: text.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn client_and_server_talk_over_the_in_memory_transport() {
    let (incoming, connector) = volley::testing::in_memory();
    let server = tokio::spawn(echo_server().serve_with_incoming(incoming, std::future::pending()));
    let channel = Channel::builder("passthrough:///in-memory")
        .connector(connector)
        .build()
        .unwrap();
    let client = EchoClient::new(channel);
    bounded(10, async {
        let reply = client.unary(message("hi")).await.unwrap().into_inner();
        assert_eq!(reply.message, "hi");
        let requests = tokio_stream::iter([message("a"), message("b")]);
        let mut replies = client.bidi(requests).await.unwrap().into_inner();
        let mut got = Vec::new();
        while let Some(r) = replies.message().await.unwrap() {
            got.push(r.message);
        }
        assert_eq!(got, ["a", "b"]);
    })
    .await;
    // The incoming stream ends with the last connector (the channel's): the server stops.
    drop(client);
    bounded(10, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_server_serves_a_stream_of_connections_until_it_ends() {
    // The program accepts connections itself and hands them over.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel::<std::io::Result<tokio::net::TcpStream>>();
    let (stop_accepting, mut stopped) = oneshot::channel::<()>();
    let acceptor = tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let _ = tx.send(accepted.map(|(socket, _)| socket));
                }
                _ = &mut stopped => return, // dropping `tx` ends the stream
            }
        }
    });
    let server = tokio::spawn(
        echo_server().serve_with_incoming(UnboundedReceiverStream::new(rx), std::future::pending()),
    );
    let client = EchoClient::new(Channel::new(&format!("http://{addr}")).unwrap());
    bounded(10, async {
        let reply = client
            .unary(message("over tcp"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.message, "over tcp");
    })
    .await;
    let _ = stop_accepting.send(());
    acceptor.await.unwrap();
    // With the stream over, the server shuts down gracefully (GOAWAY) and returns.
    bounded(10, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_channel_dials_through_its_connector() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(echo_server().serve_with_listener(listener, async {
        let _ = stopped.await;
    }));
    let dialed = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (count, addresses) = (dialed.clone(), seen.clone());
    // The target names a service the connector knows how to reach; no DNS is involved.
    let channel = Channel::builder("passthrough:///echo.internal:443")
        .connector(move |address: volley::resolver::Address| {
            count.fetch_add(1, Ordering::SeqCst);
            addresses.lock().unwrap().push(address.to_string());
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                Ok(Box::new(tcp) as BoxIo)
            }
        })
        .build()
        .unwrap();
    let client = EchoClient::new(channel);
    bounded(10, async {
        for i in 0..3 {
            let text = format!("call {i}");
            let reply = client.unary(Request::new(message(&text))).await.unwrap();
            assert_eq!(reply.into_inner().message, text);
        }
    })
    .await;
    assert_eq!(
        dialed.load(Ordering::SeqCst),
        1,
        "one connection for three calls"
    );
    assert_eq!(*seen.lock().unwrap(), ["echo.internal:443"]);

    // A connector that fails makes calls fail with UNAVAILABLE and its error.
    let failing = Channel::builder("passthrough:///nowhere:1")
        .connector(|_: volley::resolver::Address| async {
            Err::<BoxIo, _>(std::io::Error::other("no route today"))
        })
        .build()
        .unwrap();
    let status = bounded(30, EchoClient::new(failing).unary(message("x")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), volley::Code::Unavailable);
    assert!(status.message().contains("no route today"), "{status}");
    let _ = stop.send(());
    bounded(10, server).await.unwrap().unwrap();
}
