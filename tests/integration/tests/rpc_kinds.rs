//! Each RPC kind, with request and response streams of 0, 1 and many messages.

use tokio_stream::iter;
use volley_integration_tests::echo::EchoRequest;
use volley_integration_tests::{TestServer, bounded};

fn req(message: &str) -> EchoRequest {
    EchoRequest {
        message: message.to_owned(),
        ..Default::default()
    }
}

#[tokio::test]
async fn unary() {
    let server = TestServer::start().await;
    let client = server.client();
    bounded(10, async {
        let reply = client.unary(req("hi")).await.unwrap().into_inner();
        assert_eq!(reply.message, "hi");
        assert_eq!(reply.index, 0);
    })
    .await;
}

#[tokio::test]
async fn server_streaming_zero_one_many() {
    let server = TestServer::start().await;
    let client = server.client();
    bounded(10, async {
        for count in [0, 1, 100] {
            let mut stream = client
                .server_stream(EchoRequest {
                    message: "s".into(),
                    count,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            let mut got = Vec::new();
            while let Some(r) = stream.message().await.unwrap() {
                got.push(r.index);
            }
            assert_eq!(got, (0..count).collect::<Vec<_>>());
            assert!(stream.trailers().is_some(), "trailers read at the end");
        }
    })
    .await;
}

#[tokio::test]
async fn message_into_reuses_one_message_without_accumulating() {
    // 300 replies, most of them buffered several to a DATA frame, each with two tags: a
    // reused message must hold exactly one reply's fields each time (prost's merge alone
    // would append the repeated tags).
    let server = TestServer::start().await;
    let client = server.client();
    bounded(10, async {
        let tags = (0..2)
            .map(|i| volley_integration_tests::common::Tag {
                key: format!("k{i}"),
                origin: Some(volley_integration_tests::common::tag::Origin {
                    host: format!("h{i}"),
                }),
                ..Default::default()
            })
            .collect::<Vec<_>>();
        let mut stream = client
            .server_stream(EchoRequest {
                message: "reused".into(),
                count: 300,
                tags: tags.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut reply = Default::default();
        let mut next = 0;
        while stream.message_into(&mut reply).await.unwrap() {
            assert_eq!(reply.index, next);
            assert_eq!(reply.message, "reused");
            assert_eq!(reply.tags, tags);
            next += 1;
        }
        assert_eq!(next, 300);
        assert_eq!(
            reply.index, 299,
            "the end of the stream leaves the message as it was"
        );
        assert!(stream.trailers().is_some(), "trailers read at the end");
        assert!(!stream.message_into(&mut reply).await.unwrap());
    })
    .await;
}

#[tokio::test]
async fn client_streaming_zero_one_many() {
    let server = TestServer::start().await;
    let client = server.client();
    bounded(10, async {
        for count in [0usize, 1, 100] {
            let msgs: Vec<_> = (0..count).map(|i| req(&format!("{}", i % 10))).collect();
            let expected: String = msgs.iter().map(|m| m.message.clone()).collect();
            let reply = client.client_stream(iter(msgs)).await.unwrap().into_inner();
            assert_eq!(reply.index as usize, count);
            assert_eq!(reply.message, expected);
        }
    })
    .await;
}

#[tokio::test]
async fn bidi_zero_one_many() {
    let server = TestServer::start().await;
    let client = server.client();
    bounded(10, async {
        for count in [0usize, 1, 100] {
            let msgs: Vec<_> = (0..count).map(|i| req(&i.to_string())).collect();
            let mut stream = client.bidi(iter(msgs)).await.unwrap().into_inner();
            let mut got = Vec::new();
            while let Some(r) = stream.message().await.unwrap() {
                assert_eq!(r.message, got.len().to_string());
                got.push(r.index);
            }
            assert_eq!(got.len(), count);
        }
    })
    .await;
}

#[tokio::test]
async fn bidi_is_interactive() {
    // A reply arrives while the request stream is still open: the client sends the second
    // message only after reading the first reply.
    let server = TestServer::start().await;
    let client = server.client();
    bounded(10, async {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let mut replies = client
            .bidi(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        for i in 0..3 {
            tx.send(req(&format!("ping {i}"))).await.unwrap();
            let r = replies.message().await.unwrap().unwrap();
            assert_eq!(r.message, format!("ping {i}"));
        }
        drop(tx);
        assert!(replies.message().await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn imported_package_nested_types_enums_and_well_known_types_round_trip() {
    use volley::prost_types::{Duration, Timestamp};
    use volley_integration_tests::common::{Tag, tag};
    let server = TestServer::start().await;
    let client = server.client();
    let tag = Tag {
        key: "k".into(),
        kind: tag::Kind::Trace as i32,
        origin: Some(tag::Origin { host: "h".into() }),
        at: Some(Timestamp {
            seconds: 1_700_000_000,
            nanos: 5,
        }),
        ttl: Some(Duration {
            seconds: 30,
            nanos: 0,
        }),
    };
    let reply = bounded(
        10,
        client.unary(EchoRequest {
            tags: vec![tag.clone()],
            ..Default::default()
        }),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(reply.tags, vec![tag]);
}

#[tokio::test]
async fn an_rpc_named_like_a_client_method_gets_a_suffix_in_the_client() {
    let server = TestServer::start().await;
    let client = server.client();
    let reply = bounded(10, client.connect_rpc(req("c")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (reply.message.as_str(), reply.peer.as_str()),
        ("c", "connect")
    );
}
