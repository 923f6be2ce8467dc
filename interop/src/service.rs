//! The interop server's `grpc.testing.TestService`: every server feature of
//! `doc/interop-test-descriptions.md` (echo status, echo metadata, compressed requests and
//! responses, response sizes, intervals).

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use volley::{
    Code, MessageCompressed, MetadataMap, Request, Response, SendCompression, Status, Streaming,
};

use crate::testing::{
    BoolValue, EchoStatus, Empty, Payload, PayloadType, ResponseParameters, SimpleRequest,
    SimpleResponse, StreamingInputCallRequest, StreamingInputCallResponse,
    StreamingOutputCallRequest, StreamingOutputCallResponse, TestService,
};

/// Metadata the server echoes in its response headers.
const ECHO_INITIAL: &str = "x-grpc-test-echo-initial";
/// Metadata the server echoes in its trailers.
const ECHO_TRAILING: &str = "x-grpc-test-echo-trailing-bin";

/// The interop `TestService`.
#[derive(Debug, Default, Clone)]
pub struct InteropService;

/// A payload of `size` zero bytes.
pub fn zeros(size: i32) -> Payload {
    Payload {
        r#type: PayloadType::Compressable as i32,
        body: vec![0; size.max(0) as usize],
    }
}

/// The response headers and trailers that echo the request's test metadata.
fn echo_metadata(request: &MetadataMap) -> (MetadataMap, MetadataMap) {
    let mut initial = MetadataMap::new();
    let mut trailing = MetadataMap::new();
    if let Some(v) = request.get(ECHO_INITIAL) {
        // The key is valid and the value came in as valid ASCII metadata.
        let _ = initial.insert(ECHO_INITIAL, v);
    }
    if let Some(Ok(v)) = request.get_bin(ECHO_TRAILING) {
        let _ = trailing.insert_bin(ECHO_TRAILING, &v);
    }
    (initial, trailing)
}

/// The status a request asks for (`response_status`), with the echoed metadata.
fn echo_status(status: Option<&EchoStatus>, trailing: &MetadataMap) -> Option<Status> {
    let s = status.filter(|s| s.code != 0)?;
    Some(Status::with_metadata(
        Code::from_i32(s.code),
        s.message.clone(),
        trailing.clone(),
    ))
}

/// CompressedRequest: a request that says whether it was compressed must have been.
fn check_compression(expect: Option<&BoolValue>, compressed: bool) -> Result<(), Status> {
    match expect.map(|b| b.value) {
        Some(true) if !compressed => Err(Status::invalid_argument(
            "expected a compressed request message",
        )),
        Some(false) if compressed => Err(Status::invalid_argument(
            "expected an uncompressed request message",
        )),
        _ => Ok(()),
    }
}

fn check_type(response_type: i32) -> Result<(), Status> {
    if response_type == PayloadType::Compressable as i32 {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "unsupported response_type {response_type}"
        )))
    }
}

type OutputStream = volley::BoxStream<StreamingOutputCallResponse>;

/// The sender a streaming handler's task writes to: each response with whether to compress
/// it (applied by the stream as the response goes out), or the status ending the call.
type ResponseSender = mpsc::Sender<Result<(StreamingOutputCallResponse, bool), Status>>;

/// A response stream fed by `ResponseSender`, setting the per-message compression switch
/// just before each message is encoded.
fn response_stream(
    rx: mpsc::Receiver<Result<(StreamingOutputCallResponse, bool), Status>>,
    control: Option<SendCompression>,
) -> OutputStream {
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(move |item| {
        item.map(|(response, compress)| {
            if let Some(c) = &control {
                c.set_enabled(compress);
            }
            response
        })
    });
    Box::pin(stream)
}

/// Sends one response per parameter, each after its `interval_us`; false once the client
/// is gone.
async fn send_responses(tx: &ResponseSender, parameters: &[ResponseParameters]) -> bool {
    for p in parameters {
        if p.interval_us > 0 {
            tokio::time::sleep(Duration::from_micros(p.interval_us as u64)).await;
        }
        let response = StreamingOutputCallResponse {
            payload: Some(zeros(p.size)),
        };
        let compress = p.compressed.as_ref().is_some_and(|c| c.value);
        if tx.send(Ok((response, compress))).await.is_err() {
            return false;
        }
    }
    true
}

impl TestService for InteropService {
    async fn empty_call(&self, _request: Request<Empty>) -> Result<Response<Empty>, Status> {
        Ok(Response::new(Empty {}))
    }

    async fn unary_call(
        &self,
        request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        let (initial, trailing) = echo_metadata(request.metadata());
        let compressed = request
            .extensions()
            .get::<MessageCompressed>()
            .is_some_and(|c| c.0);
        if let Some(c) = request.extensions().get::<SendCompression>() {
            c.set_enabled(
                request
                    .get_ref()
                    .response_compressed
                    .as_ref()
                    .is_some_and(|b| b.value),
            );
        }
        let req = request.into_inner();
        check_compression(req.expect_compressed.as_ref(), compressed)?;
        if let Some(status) = echo_status(req.response_status.as_ref(), &trailing) {
            return Err(status);
        }
        check_type(req.response_type)?;
        let mut response = Response::new(SimpleResponse {
            payload: Some(zeros(req.response_size)),
            ..Default::default()
        });
        *response.metadata_mut() = initial;
        *response.trailers_mut() = trailing;
        Ok(response)
    }

    async fn cacheable_unary_call(
        &self,
        request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        let _ = request;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let mut response = Response::new(SimpleResponse {
            payload: Some(Payload {
                r#type: PayloadType::Compressable as i32,
                body: nanos.to_string().into_bytes(),
            }),
            ..Default::default()
        });
        let _ = response
            .metadata_mut()
            .insert("cache-control", "max-age=60");
        Ok(response)
    }

    type StreamingOutputCallStream = OutputStream;

    async fn streaming_output_call(
        &self,
        request: Request<StreamingOutputCallRequest>,
    ) -> Result<Response<Self::StreamingOutputCallStream>, Status> {
        let (initial, trailing) = echo_metadata(request.metadata());
        let control = request.extensions().get::<SendCompression>().cloned();
        let req = request.into_inner();
        check_type(req.response_type)?;
        let (tx, rx) = mpsc::channel(4);
        let status = echo_status(req.response_status.as_ref(), &trailing);
        tokio::spawn(async move {
            let sent = send_responses(&tx, &req.response_parameters).await;
            if let (true, Some(status)) = (sent, status) {
                let _ = tx.send(Err(status)).await;
            }
        });
        let mut response = Response::new(response_stream(rx, control));
        *response.metadata_mut() = initial;
        *response.trailers_mut() = trailing;
        Ok(response)
    }

    async fn streaming_input_call(
        &self,
        request: Request<Streaming<StreamingInputCallRequest>>,
    ) -> Result<Response<StreamingInputCallResponse>, Status> {
        let (initial, trailing) = echo_metadata(request.metadata());
        let mut stream = request.into_inner();
        let mut total = 0usize;
        while let Some(message) = stream.message().await? {
            check_compression(
                message.expect_compressed.as_ref(),
                stream.last_message_compressed(),
            )?;
            total += message.payload.map_or(0, |p| p.body.len());
        }
        let mut response = Response::new(StreamingInputCallResponse {
            aggregated_payload_size: i32::try_from(total).unwrap_or(i32::MAX),
        });
        *response.metadata_mut() = initial;
        *response.trailers_mut() = trailing;
        Ok(response)
    }

    type FullDuplexCallStream = OutputStream;

    async fn full_duplex_call(
        &self,
        request: Request<Streaming<StreamingOutputCallRequest>>,
    ) -> Result<Response<Self::FullDuplexCallStream>, Status> {
        let (initial, trailing) = echo_metadata(request.metadata());
        let control = request.extensions().get::<SendCompression>().cloned();
        let mut requests = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let echo_trailing = trailing.clone();
        tokio::spawn(async move {
            loop {
                let req = match requests.message().await {
                    Ok(Some(req)) => req,
                    Ok(None) => return,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                // Echo Status: the call ends with it, and later messages are not processed.
                if let Some(status) = echo_status(req.response_status.as_ref(), &echo_trailing) {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
                if let Err(status) = check_type(req.response_type) {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
                if !send_responses(&tx, &req.response_parameters).await {
                    return;
                }
            }
        });
        let mut response = Response::new(response_stream(rx, control));
        *response.metadata_mut() = initial;
        *response.trailers_mut() = trailing;
        Ok(response)
    }

    type HalfDuplexCallStream = OutputStream;

    async fn half_duplex_call(
        &self,
        request: Request<Streaming<StreamingOutputCallRequest>>,
    ) -> Result<Response<Self::HalfDuplexCallStream>, Status> {
        let (initial, trailing) = echo_metadata(request.metadata());
        let control = request.extensions().get::<SendCompression>().cloned();
        let mut requests = request.into_inner();
        let mut all = Vec::new();
        while let Some(req) = requests.message().await? {
            all.push(req);
        }
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            for req in all {
                if !send_responses(&tx, &req.response_parameters).await {
                    return;
                }
            }
        });
        let mut response = Response::new(response_stream(rx, control));
        *response.metadata_mut() = initial;
        *response.trailers_mut() = trailing;
        Ok(response)
    }

    async fn unimplemented_call(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Empty>, Status> {
        Err(Status::unimplemented(
            "grpc.testing.TestService/UnimplementedCall is not implemented",
        ))
    }
}
