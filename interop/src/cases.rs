//! The interop client's test cases (`doc/interop-test-descriptions.md`). Each returns `Ok`
//! only when every assertion of the case held, and otherwise says which failed.

use std::time::{Duration, Instant};

use tokio_stream::StreamExt;
use volley::{
    Certificate, Channel, ClientTlsConfig, Code, CompressionEncoding, MessageCompressed, Request,
    SendCompression, Status,
};

use crate::service::zeros;
use crate::testing::{
    BoolValue, EchoStatus, Empty, ResponseParameters, SimpleRequest, StreamingInputCallRequest,
    StreamingOutputCallRequest, TestServiceClient, UnimplementedServiceClient,
};

/// Every case this client implements.
pub const CASES: &[&str] = &[
    "empty_unary",
    "large_unary",
    "client_streaming",
    "server_streaming",
    "ping_pong",
    "empty_stream",
    "timeout_on_sleeping_server",
    "cancel_after_begin",
    "cancel_after_first_response",
    "status_code_and_message",
    "special_status_message",
    "custom_metadata",
    "unimplemented_method",
    "unimplemented_service",
    "client_compressed_unary",
    "server_compressed_unary",
    "client_compressed_streaming",
    "server_compressed_streaming",
    "half_duplex",
    "rpc_soak",
    "channel_soak",
    // The negative HTTP/2 cases (`doc/http2-interop-test-descriptions.md`), run against
    // gRPC's `test/http2_test/http2_test_server.py`.
    "rst_after_header",
    "rst_after_data",
    "rst_during_data",
    "goaway",
    "ping",
    "max_streams",
    "data_frame_padding",
    "no_df_padding_sanity_test",
];

/// Where and how to connect, and the soak settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `--server_host`.
    pub host: String,
    /// `--server_port`.
    pub port: u16,
    /// `--use_tls`.
    pub use_tls: bool,
    /// `--use_test_ca`: trust gRPC's test CA instead of the system roots.
    pub use_test_ca: bool,
    /// `--server_host_override`: the TLS name and `:authority`.
    pub host_override: Option<String>,
    /// `--soak_iterations`.
    pub soak_iterations: u32,
    /// `--soak_max_failures`.
    pub soak_max_failures: u32,
    /// `--soak_per_iteration_max_acceptable_latency_ms`.
    pub soak_max_latency: Duration,
    /// `--soak_overall_timeout_seconds` (0: none).
    pub soak_overall_timeout: Option<Duration>,
    /// `--soak_min_time_ms_between_rpcs`.
    pub soak_min_gap: Duration,
}

/// A failed assertion.
pub type Failure = String;

macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

impl Config {
    /// A new channel to the server.
    pub fn channel(&self) -> Result<Channel, Failure> {
        let host = if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let mut builder = Channel::builder(&format!("dns:///{host}:{}", self.port));
        if let Some(name) = &self.host_override {
            builder = builder.authority(name);
        }
        if self.use_tls {
            let mut tls = ClientTlsConfig::new();
            if self.use_test_ca {
                tls = tls.ca_certificate(Certificate::from_pem(crate::TEST_CA));
            }
            if let Some(name) = &self.host_override {
                tls = tls.domain_name(name.clone());
            }
            builder = builder.tls_config(tls);
        }
        builder
            .build()
            .map_err(|e| format!("cannot build the channel: {e}"))
    }
}

fn status_error(what: &str, status: Status) -> Failure {
    format!("{what}: {status}")
}

fn expect_code<T>(what: &str, result: Result<T, Status>, code: Code) -> Result<Status, Failure> {
    match result {
        Ok(_) => Err(format!("{what}: succeeded, expected {code:?}")),
        Err(status) if status.code() == code => Ok(status),
        Err(status) => Err(format!("{what}: expected {code:?}, got {status}")),
    }
}

fn large_request() -> SimpleRequest {
    SimpleRequest {
        response_size: 314_159,
        payload: Some(zeros(271_828)),
        ..Default::default()
    }
}

fn check_payload(
    what: &str,
    payload: Option<&crate::testing::Payload>,
    size: usize,
) -> Result<(), Failure> {
    let body = payload.map_or(&[][..], |p| &p.body[..]);
    check!(
        body.len() == size,
        "{what}: payload of {} bytes, expected {size}",
        body.len()
    );
    check!(
        body.iter().all(|b| *b == 0),
        "{what}: payload is not all zeros"
    );
    Ok(())
}

fn output_request(sizes: &[i32], payload: Option<i32>) -> StreamingOutputCallRequest {
    StreamingOutputCallRequest {
        response_parameters: sizes
            .iter()
            .map(|s| ResponseParameters {
                size: *s,
                ..Default::default()
            })
            .collect(),
        payload: payload.map(zeros),
        ..Default::default()
    }
}

/// A request stream fed from the test, with a sender to push messages and half-close (drop).
fn request_stream<T: Send + 'static>() -> (
    tokio::sync::mpsc::Sender<T>,
    tokio_stream::wrappers::ReceiverStream<T>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    (tx, tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Runs the case `name`.
pub async fn run(name: &str, config: &Config) -> Result<(), Failure> {
    let channel = config.channel()?;
    let client = TestServiceClient::new(channel.clone());
    match name {
        "empty_unary" => {
            client
                .empty_call(Empty {})
                .await
                .map_err(|s| status_error("EmptyCall", s))?;
            Ok(())
        }
        "large_unary" => large_unary(&client).await,
        "client_streaming" => {
            let sizes = [27_182, 8, 1_828, 45_904];
            let requests = tokio_stream::iter(sizes.map(|s| StreamingInputCallRequest {
                payload: Some(zeros(s)),
                ..Default::default()
            }));
            let response = client
                .streaming_input_call(requests)
                .await
                .map_err(|s| status_error("StreamingInputCall", s))?;
            let total = response.get_ref().aggregated_payload_size;
            check!(
                total == 74_922,
                "aggregated_payload_size {total}, expected 74922"
            );
            Ok(())
        }
        "server_streaming" => {
            let sizes = [31_415, 9, 2_653, 58_979];
            let mut stream = client
                .streaming_output_call(output_request(&sizes, None))
                .await
                .map_err(|s| status_error("StreamingOutputCall", s))?
                .into_inner();
            let mut got = Vec::new();
            while let Some(r) = stream
                .message()
                .await
                .map_err(|s| status_error("stream", s))?
            {
                got.push(r);
            }
            check!(got.len() == 4, "{} responses, expected 4", got.len());
            for (r, size) in got.iter().zip(sizes) {
                check_payload("response", r.payload.as_ref(), size as usize)?;
            }
            Ok(())
        }
        "ping_pong" => ping_pong(&client).await,
        "empty_stream" => {
            let mut stream = client
                .full_duplex_call(tokio_stream::empty::<StreamingOutputCallRequest>())
                .await
                .map_err(|s| status_error("FullDuplexCall", s))?
                .into_inner();
            let first = stream
                .message()
                .await
                .map_err(|s| status_error("stream", s))?;
            check!(first.is_none(), "a response on an empty stream");
            Ok(())
        }
        "timeout_on_sleeping_server" => {
            let (tx, requests) = request_stream();
            let _ = tx.send(output_request(&[], Some(27_182))).await;
            let request = Request::new(requests).with_timeout(Duration::from_millis(1));
            let result = async {
                let mut stream = client.full_duplex_call(request).await?.into_inner();
                while stream.message().await?.is_some() {}
                Ok::<_, Status>(())
            }
            .await;
            drop(tx);
            expect_code(
                "FullDuplexCall with a 1 ms timeout",
                result,
                Code::DeadlineExceeded,
            )?;
            Ok(())
        }
        "cancel_after_begin" => {
            // Volley cancels a call by dropping it: RST_STREAM(CANCEL) goes to the server, and
            // the caller, who dropped it, has no status to read. The case checks that the call
            // was under way (headers sent, no answer) when it was cancelled.
            let (tx, requests) = request_stream::<StreamingInputCallRequest>();
            let call = client.streaming_input_call(requests);
            let outcome = tokio::time::timeout(Duration::from_millis(200), call).await;
            check!(
                outcome.is_err(),
                "StreamingInputCall finished before it was cancelled: {outcome:?}"
            );
            drop(tx);
            Ok(())
        }
        "cancel_after_first_response" => {
            let (tx, requests) = request_stream();
            let _ = tx.send(output_request(&[31_415], Some(27_182))).await;
            let mut stream = client
                .full_duplex_call(requests)
                .await
                .map_err(|s| status_error("FullDuplexCall", s))?
                .into_inner();
            let first = stream
                .message()
                .await
                .map_err(|s| status_error("first response", s))?
                .ok_or("no first response")?;
            check_payload("first response", first.payload.as_ref(), 31_415)?;
            // Cancel: dropping the response stream resets the call.
            drop(stream);
            drop(tx);
            Ok(())
        }
        "status_code_and_message" => status_round_trip(&client, "test status message").await,
        "special_status_message" => {
            status_round_trip(
                &client,
                "\t\ntest with whitespace\r\nand Unicode BMP \u{263A} and non-BMP \u{1F608}\t\n",
            )
            .await
        }
        "custom_metadata" => custom_metadata(&client).await,
        "unimplemented_method" => {
            let result = client.unimplemented_call(Empty {}).await;
            expect_code("UnimplementedCall", result, Code::Unimplemented)?;
            Ok(())
        }
        "unimplemented_service" => {
            let client = UnimplementedServiceClient::new(channel);
            let result = client.unimplemented_call(Empty {}).await;
            expect_code("UnimplementedService", result, Code::Unimplemented)?;
            Ok(())
        }
        "client_compressed_unary" => client_compressed_unary(&client).await,
        "server_compressed_unary" => {
            for compress in [true, false] {
                let request = SimpleRequest {
                    response_compressed: Some(BoolValue { value: compress }),
                    ..large_request()
                };
                let response = client
                    .unary_call(request)
                    .await
                    .map_err(|s| status_error("UnaryCall", s))?;
                let compressed = response
                    .extensions()
                    .get::<MessageCompressed>()
                    .is_some_and(|c| c.0);
                check!(
                    compressed == compress,
                    "response_compressed={compress} but the response's compressed flag is {compressed}"
                );
                check_payload("response", response.get_ref().payload.as_ref(), 314_159)?;
            }
            Ok(())
        }
        "client_compressed_streaming" => client_compressed_streaming(&client).await,
        "server_compressed_streaming" => {
            let request = StreamingOutputCallRequest {
                response_parameters: vec![
                    ResponseParameters {
                        size: 31_415,
                        compressed: Some(BoolValue { value: true }),
                        ..Default::default()
                    },
                    ResponseParameters {
                        size: 92_653,
                        compressed: Some(BoolValue { value: false }),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            };
            let mut stream = client
                .streaming_output_call(request)
                .await
                .map_err(|s| status_error("StreamingOutputCall", s))?
                .into_inner();
            for (size, compress) in [(31_415, true), (92_653, false)] {
                let r = stream
                    .message()
                    .await
                    .map_err(|s| status_error("stream", s))?
                    .ok_or("fewer than two responses")?;
                check!(
                    stream.last_message_compressed() == compress,
                    "response of {size} bytes: compressed flag {}, expected {compress}",
                    stream.last_message_compressed()
                );
                check_payload("response", r.payload.as_ref(), size)?;
            }
            let extra = stream
                .message()
                .await
                .map_err(|s| status_error("stream", s))?;
            check!(extra.is_none(), "more than two responses");
            Ok(())
        }
        "half_duplex" => {
            let sizes = [31_415, 9, 2_653, 58_979];
            let requests = tokio_stream::iter(sizes.map(|s| output_request(&[s], Some(s))));
            let mut stream = client
                .half_duplex_call(requests)
                .await
                .map_err(|s| status_error("HalfDuplexCall", s))?
                .into_inner();
            for size in sizes {
                let r = stream
                    .message()
                    .await
                    .map_err(|s| status_error("stream", s))?
                    .ok_or("fewer than four responses")?;
                check_payload("response", r.payload.as_ref(), size as usize)?;
            }
            Ok(())
        }
        "rpc_soak" => soak(config, &client, false).await,
        "channel_soak" => soak(config, &client, true).await,
        // The server resets the stream (code 0) after its headers, during its data, or after
        // all of it: the call must fail, whatever arrived before the reset.
        "rst_after_header" | "rst_after_data" | "rst_during_data" => {
            match client.unary_call(large_request()).await {
                Ok(_) => Err("the call succeeded despite the server's RST_STREAM".to_owned()),
                Err(status) => {
                    eprintln!("the call failed, as it must: {status}");
                    Ok(())
                }
            }
        }
        // The server sends GOAWAY after the first call: the second goes to a new connection
        // without the application doing anything.
        "goaway" => {
            large_unary(&client).await?;
            // The spec's client sleeps a second between the calls (grpc/grpc#9300).
            tokio::time::sleep(Duration::from_secs(1)).await;
            large_unary(&client).await
        }
        // The server pings around its headers and data (the client must answer each), or it
        // pads its DATA frames: the call succeeds all the same.
        "ping" | "data_frame_padding" | "no_df_padding_sanity_test" => large_unary(&client).await,
        // The server allows one stream at a time after the first call: ten concurrent calls
        // must queue, not fail.
        "max_streams" => {
            large_unary(&client).await?;
            let calls: Vec<_> = (0..10)
                .map(|_| {
                    let client = client.clone();
                    tokio::spawn(async move { large_unary(&client).await })
                })
                .collect();
            for call in calls {
                call.await.map_err(|e| format!("a call panicked: {e}"))??;
            }
            Ok(())
        }
        other => Err(format!("unknown test case {other:?}")),
    }
}

async fn large_unary(client: &TestServiceClient) -> Result<(), Failure> {
    let response = client
        .unary_call(large_request())
        .await
        .map_err(|s| status_error("UnaryCall", s))?;
    check_payload("response", response.get_ref().payload.as_ref(), 314_159)
}

async fn ping_pong(client: &TestServiceClient) -> Result<(), Failure> {
    let steps = [(31_415, 27_182), (9, 8), (2_653, 1_828), (58_979, 45_904)];
    let (tx, requests) = request_stream();
    // The call returns before the response headers (servers may send them only with the
    // first response, as the C++ and Python ones do), so the first request follows it.
    let mut stream = client
        .full_duplex_call(requests)
        .await
        .map_err(|s| status_error("FullDuplexCall", s))?
        .into_inner();
    for (size, payload) in steps {
        tx.send(output_request(&[size], Some(payload)))
            .await
            .map_err(|_| "the request stream closed early")?;
        let r = stream
            .message()
            .await
            .map_err(|s| status_error("response", s))?
            .ok_or("the server ended the stream early")?;
        check_payload("response", r.payload.as_ref(), size as usize)?;
    }
    drop(tx);
    let extra = stream.message().await.map_err(|s| status_error("end", s))?;
    check!(extra.is_none(), "more responses than requests");
    Ok(())
}

async fn status_round_trip(client: &TestServiceClient, message: &str) -> Result<(), Failure> {
    let echo = EchoStatus {
        code: 2,
        message: message.to_owned(),
    };
    let result = client
        .unary_call(SimpleRequest {
            response_status: Some(echo.clone()),
            ..Default::default()
        })
        .await;
    let status = expect_code("UnaryCall", result, Code::Unknown)?;
    check!(
        status.message() == message,
        "UnaryCall status message {:?}, expected {message:?}",
        status.message()
    );
    let request = StreamingOutputCallRequest {
        response_status: Some(echo),
        ..Default::default()
    };
    let result = async {
        let mut stream = client
            .full_duplex_call(tokio_stream::iter([request]))
            .await?
            .into_inner();
        while stream.message().await?.is_some() {}
        Ok::<_, Status>(())
    }
    .await;
    let status = expect_code("FullDuplexCall", result, Code::Unknown)?;
    check!(
        status.message() == message,
        "FullDuplexCall status message {:?}, expected {message:?}",
        status.message()
    );
    Ok(())
}

async fn custom_metadata(client: &TestServiceClient) -> Result<(), Failure> {
    const INITIAL: &str = "x-grpc-test-echo-initial";
    const TRAILING: &str = "x-grpc-test-echo-trailing-bin";
    const VALUE: &str = "test_initial_metadata_value";
    let bin = [0xab, 0xab, 0xab];
    fn with_metadata<T>(mut request: Request<T>) -> Result<Request<T>, Failure> {
        let m = request.metadata_mut();
        m.insert(INITIAL, VALUE).map_err(|e| e.to_string())?;
        m.insert_bin(TRAILING, &[0xab, 0xab, 0xab])
            .map_err(|e| e.to_string())?;
        Ok(request)
    }
    let check = |what: &str,
                 initial: &volley::MetadataMap,
                 trailing: &volley::MetadataMap|
     -> Result<(), Failure> {
        check!(
            initial.get(INITIAL) == Some(VALUE),
            "{what}: initial metadata {INITIAL} = {:?}",
            initial.get(INITIAL)
        );
        let got = trailing.get_bin(TRAILING).and_then(Result::ok);
        check!(
            got.as_deref() == Some(&bin[..]),
            "{what}: trailing metadata {TRAILING} = {got:?}"
        );
        Ok(())
    };

    let response = client
        .unary_call(with_metadata(Request::new(large_request()))?)
        .await
        .map_err(|s| status_error("UnaryCall", s))?;
    check_payload("UnaryCall", response.get_ref().payload.as_ref(), 314_159)?;
    check("UnaryCall", response.metadata(), response.trailers())?;

    let requests = tokio_stream::iter([output_request(&[314_159], Some(271_828))]);
    let response = client
        .full_duplex_call(with_metadata(Request::new(requests))?)
        .await
        .map_err(|s| status_error("FullDuplexCall", s))?;
    // A bidirectional call returns before its response headers: the stream has them.
    let mut stream = response.into_inner();
    let initial = stream
        .headers()
        .await
        .map_err(|s| status_error("FullDuplexCall headers", s))?
        .clone();
    let mut count = 0;
    while let Some(r) = stream
        .message()
        .await
        .map_err(|s| status_error("stream", s))?
    {
        check_payload("FullDuplexCall", r.payload.as_ref(), 314_159)?;
        count += 1;
    }
    check!(count == 1, "FullDuplexCall: {count} responses, expected 1");
    let trailing = stream.trailers().cloned().unwrap_or_default();
    check("FullDuplexCall", &initial, &trailing)
}

async fn client_compressed_unary(client: &TestServiceClient) -> Result<(), Failure> {
    let gzip = client.clone().send_compressed(CompressionEncoding::Gzip);
    let request = |expect: bool, compress: bool| {
        let mut r = Request::new(SimpleRequest {
            expect_compressed: Some(BoolValue { value: expect }),
            ..large_request()
        });
        r.extensions_mut().insert(SendCompression::new(compress));
        r
    };
    // The probe: an uncompressed request that claims to be compressed must be refused.
    let probe = gzip.unary_call(request(true, false)).await;
    expect_code("the uncompressed probe", probe, Code::InvalidArgument)?;
    for (expect, compress) in [(true, true), (false, false)] {
        let response = gzip
            .unary_call(request(expect, compress))
            .await
            .map_err(|s| status_error(&format!("UnaryCall (compressed={compress})"), s))?;
        check_payload("response", response.get_ref().payload.as_ref(), 314_159)?;
    }
    Ok(())
}

async fn client_compressed_streaming(client: &TestServiceClient) -> Result<(), Failure> {
    let gzip = client.clone().send_compressed(CompressionEncoding::Gzip);
    // A request stream whose messages say whether to compress them; the switch is set as
    // each message is taken, just before it is encoded.
    let stream_of = |messages: Vec<(StreamingInputCallRequest, bool)>| {
        let control = SendCompression::new(true);
        let switch = control.clone();
        let stream = tokio_stream::iter(messages).map(move |(m, compress)| {
            switch.set_enabled(compress);
            m
        });
        let mut request = Request::new(stream);
        request.extensions_mut().insert(control);
        request
    };
    let message = |expect: bool, size: i32| StreamingInputCallRequest {
        expect_compressed: Some(BoolValue { value: expect }),
        payload: Some(zeros(size)),
    };
    let probe = gzip
        .streaming_input_call(stream_of(vec![(message(true, 27_182), false)]))
        .await;
    expect_code("the uncompressed probe", probe, Code::InvalidArgument)?;
    let response = gzip
        .streaming_input_call(stream_of(vec![
            (message(true, 27_182), true),
            (message(false, 45_904), false),
        ]))
        .await
        .map_err(|s| status_error("StreamingInputCall", s))?;
    let total = response.get_ref().aggregated_payload_size;
    check!(
        total == 73_086,
        "aggregated_payload_size {total}, expected 73086"
    );
    Ok(())
}

/// `rpc_soak` (one channel) and `channel_soak` (a new channel per iteration): many
/// large_unary calls, each within the latency bound, at most `soak_max_failures` failing.
async fn soak(
    config: &Config,
    client: &TestServiceClient,
    new_channel: bool,
) -> Result<(), Failure> {
    let started = Instant::now();
    let mut failures = 0u32;
    let mut latencies = Vec::new();
    let mut done = 0;
    for i in 0..config.soak_iterations {
        if config
            .soak_overall_timeout
            .is_some_and(|limit| started.elapsed() >= limit)
        {
            break;
        }
        let iteration_start = Instant::now();
        let outcome = if new_channel {
            match config.channel() {
                Ok(channel) => large_unary(&TestServiceClient::new(channel)).await,
                Err(e) => Err(e),
            }
        } else {
            large_unary(client).await
        };
        let latency = iteration_start.elapsed();
        latencies.push(latency);
        done += 1;
        match outcome {
            Err(e) => {
                failures += 1;
                eprintln!("soak iteration {i} failed: {e}");
            }
            Ok(()) if latency > config.soak_max_latency => {
                failures += 1;
                eprintln!(
                    "soak iteration {i} took {latency:?}, more than {:?}",
                    config.soak_max_latency
                );
            }
            Ok(()) => {}
        }
        let gap = config
            .soak_min_gap
            .saturating_sub(iteration_start.elapsed());
        if !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
    }
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    eprintln!(
        "soak: {done} iterations, {failures} failed; latency p50 {:?}, p99 {:?}, max {:?}",
        pct(0.5),
        pct(0.99),
        latencies.last().copied().unwrap_or_default()
    );
    check!(done > 0, "no soak iteration ran");
    check!(
        failures <= config.soak_max_failures,
        "{failures} soak iterations failed, at most {} allowed",
        config.soak_max_failures
    );
    Ok(())
}
