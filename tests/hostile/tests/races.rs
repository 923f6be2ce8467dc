//! Frames that arrive together: a raw HTTP/2 client (frames written by hand, several in one
//! write) against an in-process Volley server whose handlers report what they saw. The
//! protocol code takes in a whole read before the connection acts on its events, so a
//! stream it has already closed may still have events on their way; the call must see
//! every one of them.

use volley::Code;
use volley_hostile_tests::*;
use volley_integration_tests::{Event, TestServer, bounded};

/// A bidi call whose client sends a message and resets the stream in the same write: the
/// handler's request stream fails with CANCELLED (the server once forgot the stream on the
/// DATA, before the RST_STREAM reached the call, and the handler waited forever).
#[tokio::test]
async fn a_reset_read_together_with_data_cancels_the_request_stream() {
    let mut server = TestServer::start().await;
    let mut peer = RawPeer::connect(server.addr).await;
    bounded(10, async {
        peer.send_headers(1, &request_block("/volley.test.Echo/Bidi", &[]), false)
            .await;
        peer.send_data(1, &grpc_message(false, &echo_request("first")), false)
            .await;
        // The handler runs: its reply to the first message comes back.
        peer.read_until(5, |f| f.kind == kind::DATA && f.stream == 1)
            .await
            .expect("the reply to the first message");
        let mut both = frame(
            kind::DATA,
            0,
            1,
            &grpc_message(false, &echo_request("second")),
        );
        both.extend(rst_stream(1, code::CANCEL));
        peer.send(&both).await;
        loop {
            match server.next_event().await {
                Event::RequestStreamFailed(code) => {
                    assert_eq!(code, Code::Cancelled);
                    break;
                }
                _ => continue,
            }
        }
    })
    .await;
}
