//! `volley call`: a call of any kind to any method, JSON in and out.

use std::io::Write;
use std::time::Duration;

use prost::Message;
use prost_reflect::{DynamicMessage, MessageDescriptor, MethodDescriptor};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use volley::{Channel, Grpc, MetadataMap, Request, Status};
use volley_types::StatusExt;

use crate::describe::{Symbol, find};
use crate::raw::Raw;
use crate::schema::SchemaSource;
use crate::{Error, schema_for};

/// What a call sends, and how it reports.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// The request(s) as JSON (`-d`): a literal, `@file`, or `@-` for standard input (also
    /// the default). Several JSON values (whitespace or one per line) are a client stream.
    pub data: Option<String>,
    /// Request metadata, `key: value` (`-H`); a `-bin` key's value is base64.
    pub headers: Vec<String>,
    /// The call's deadline (`--timeout`). Default: none.
    pub timeout: Option<Duration>,
    /// Print the response headers and trailers too (`-v`).
    pub verbose: bool,
}

/// The request metadata from `key: value` lines.
pub fn metadata(headers: &[String]) -> Result<MetadataMap, Error> {
    use base64::Engine;
    let mut map = MetadataMap::new();
    for header in headers {
        let (key, value) = header
            .split_once(':')
            .ok_or_else(|| Error::usage(format!("a header is `key: value`, not {header:?}")))?;
        let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
        let inserted = if key.ends_with("-bin") {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(value)
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(value))
                .map_err(|e| Error::usage(format!("{key}: not base64: {e}")))?;
            map.insert_bin(&key, &bytes)
        } else {
            map.insert(&key, value)
        };
        inserted.map_err(|e| Error::usage(format!("bad header {header:?}: {e}")))?;
    }
    Ok(map)
}

/// One JSON value as a request message of type `desc`.
fn encode(desc: &MessageDescriptor, value: serde_json::Value) -> Result<Raw, Error> {
    let message = DynamicMessage::deserialize(desc.clone(), value)
        .map_err(|e| Error::usage(format!("the request is not a {}: {e}", desc.full_name())))?;
    Ok(Raw(message.encode_to_vec()))
}

/// A response message as one line of JSON.
pub fn to_json(desc: &MessageDescriptor, raw: &Raw) -> Result<String, Error> {
    let message = DynamicMessage::decode(desc.clone(), &raw.0[..]).map_err(|e| {
        Error::status(
            Status::internal(format!("the response is not a {}: {e}", desc.full_name())),
            "decoding the response",
        )
    })?;
    serde_json::to_string(&message).map_err(|e| {
        Error::status(
            Status::internal(format!("cannot print the response: {e}")),
            "printing",
        )
    })
}

/// Every JSON value in `text`.
fn values(text: &str) -> Result<Vec<serde_json::Value>, Error> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<serde_json::Value>()
        .collect::<Result<_, _>>()
        .map_err(|e| Error::usage(format!("bad JSON: {e}")))
}

/// The method `name` names, and its `:path` (kept for the program's life: Volley's call API
/// takes a `&'static str`, and the CLI resolves one method per run).
pub async fn resolve(
    channel: &Channel,
    source: &SchemaSource,
    name: &str,
) -> Result<(MethodDescriptor, &'static str), Error> {
    let schema = schema_for(Some(channel), source, name).await?;
    let Some(Symbol::Method(method)) = find(&schema.pool, name) else {
        return Err(Error::usage(format!("no method {name} in the schema")));
    };
    let path: &'static str = Box::leak(
        format!("/{}/{}", method.parent_service().full_name(), method.name()).into_boxed_str(),
    );
    Ok((method, path))
}

/// The request messages in `data` (JSON values, or `@file`), as encoded bytes.
pub fn requests(desc: &MessageDescriptor, data: &str) -> Result<Vec<Raw>, Error> {
    let text = match data.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| Error::usage(format!("cannot read {path}: {e}")))?,
        None => data.to_owned(),
    };
    values(&text)?
        .into_iter()
        .map(|v| encode(desc, v))
        .collect()
}

/// Feeds the request messages to `tx`: all of `-d` (or its file), or standard input as it
/// comes (one JSON value per line), stopping at the first bad one (which `tx` then carries).
async fn feed<R: AsyncBufRead + Unpin>(
    data: Option<String>,
    stdin: R,
    desc: MessageDescriptor,
    tx: mpsc::Sender<Result<Raw, Error>>,
) {
    let from_stdin = match data.as_deref() {
        None | Some("@-") => true,
        Some(_) => false,
    };
    if !from_stdin {
        match requests(&desc, &data.unwrap_or_default()) {
            Ok(messages) => {
                for message in messages {
                    if tx.send(Ok(message)).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
            }
        }
        return;
    }
    let mut lines = stdin.lines();
    loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => return,
            Err(e) => {
                let _ = tx
                    .send(Err(Error::usage(format!(
                        "cannot read standard input: {e}"
                    ))))
                    .await;
                return;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        if !send_all(&line, &desc, &tx).await {
            return;
        }
    }
}

/// Sends every JSON value in `text` as a message, or the first error; false when nothing
/// more should be sent (an error, or the call is gone).
async fn send_all(
    text: &str,
    desc: &MessageDescriptor,
    tx: &mpsc::Sender<Result<Raw, Error>>,
) -> bool {
    let parsed = values(text).and_then(|values| {
        values
            .into_iter()
            .map(|v| encode(desc, v))
            .collect::<Result<Vec<_>, _>>()
    });
    match parsed {
        Ok(messages) => {
            for message in messages {
                if tx.send(Ok(message)).await.is_err() {
                    return false;
                }
            }
            true
        }
        Err(e) => {
            let _ = tx.send(Err(e)).await;
            false
        }
    }
}

fn print_metadata(
    out: &mut impl Write,
    title: &str,
    metadata: &MetadataMap,
) -> std::io::Result<()> {
    writeln!(out, "{title}:")?;
    use base64::Engine;
    for (key, value) in metadata.iter() {
        match value {
            volley::MetadataValue::Ascii(text) => writeln!(out, "  {key}: {text}")?,
            volley::MetadataValue::Binary(bytes) => writeln!(
                out,
                "  {key}: {}",
                base64::engine::general_purpose::STANDARD.encode(bytes)
            )?,
        }
    }
    Ok(())
}

/// A status as the CLI prints it: code name, message, and its rich error details decoded.
pub fn format_status(status: &Status) -> String {
    let mut text = format!(
        "ERROR:\n  Code: {}\n  Message: {}\n",
        status.code().name(),
        status.message()
    );
    let details = status.details_any();
    if !details.is_empty() {
        text.push_str("  Details:\n");
        for (i, any) in details.iter().enumerate() {
            let decoded = decode_detail(status, &any.type_url)
                .unwrap_or_else(|| format!("({} bytes)", any.value.len()));
            text.push_str(&format!("  {}) {}: {decoded}\n", i + 1, any.type_url));
        }
    }
    text
}

/// A standard error detail (`google.rpc.*`) decoded and printed.
fn decode_detail(status: &Status, type_url: &str) -> Option<String> {
    use volley_types::*;
    let name = type_url.rsplit('/').next()?;
    Some(match name {
        "google.rpc.BadRequest" => format!("{:?}", status.get_detail::<BadRequest>()?),
        "google.rpc.ErrorInfo" => format!("{:?}", status.get_detail::<ErrorInfo>()?),
        "google.rpc.RetryInfo" => format!("{:?}", status.get_detail::<RetryInfo>()?),
        "google.rpc.DebugInfo" => format!("{:?}", status.get_detail::<DebugInfo>()?),
        "google.rpc.QuotaFailure" => format!("{:?}", status.get_detail::<QuotaFailure>()?),
        "google.rpc.PreconditionFailure" => {
            format!("{:?}", status.get_detail::<PreconditionFailure>()?)
        }
        "google.rpc.RequestInfo" => format!("{:?}", status.get_detail::<RequestInfo>()?),
        "google.rpc.ResourceInfo" => format!("{:?}", status.get_detail::<ResourceInfo>()?),
        "google.rpc.Help" => format!("{:?}", status.get_detail::<Help>()?),
        "google.rpc.LocalizedMessage" => {
            format!("{:?}", status.get_detail::<LocalizedMessage>()?)
        }
        _ => return None,
    })
}

fn io(e: std::io::Error) -> Error {
    Error::usage(format!("cannot write the output: {e}"))
}

/// A response with one message: its JSON line, with its headers and trailers when
/// `verbose`.
fn print_single(
    out: &mut impl Write,
    verbose: bool,
    output: &MessageDescriptor,
    response: &volley::Response<Raw>,
) -> Result<(), Error> {
    if verbose {
        print_metadata(out, "Response headers", response.metadata()).map_err(io)?;
    }
    writeln!(out, "{}", to_json(output, response.get_ref())?).map_err(io)?;
    if verbose {
        print_metadata(out, "Response trailers", response.trailers()).map_err(io)?;
    }
    Ok(())
}

/// A response stream: one JSON line per message as it arrives, with the headers (`headers`,
/// else the stream's own, for a bidi call) and trailers when `verbose`.
async fn print_stream(
    out: &mut impl Write,
    verbose: bool,
    output: &MessageDescriptor,
    headers: Option<MetadataMap>,
    mut stream: volley::Streaming<Raw>,
) -> Result<(), Error> {
    if verbose {
        let headers = match headers {
            Some(headers) => headers,
            None => stream.headers().await.map_err(failed)?.clone(),
        };
        print_metadata(out, "Response headers", &headers).map_err(io)?;
    }
    while let Some(reply) = stream.message().await.map_err(failed)? {
        writeln!(out, "{}", to_json(output, &reply)?).map_err(io)?;
        out.flush().map_err(io)?;
    }
    if verbose {
        let trailers = stream.trailers().cloned().unwrap_or_default();
        print_metadata(out, "Response trailers", &trailers).map_err(io)?;
    }
    Ok(())
}

/// A request with the call's metadata and deadline.
fn with_head<T>(message: T, metadata: &MetadataMap, timeout: Option<Duration>) -> Request<T> {
    let mut request = Request::new(message);
    *request.metadata_mut() = metadata.clone();
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    request
}

fn failed(status: Status) -> Error {
    Error::status(status, "the call failed")
}

/// `volley call`: calls `method` (`pkg.Service/Method` or `pkg.Service.Method`) and prints
/// each response as one line of JSON to `out`.
pub async fn call<R>(
    channel: &Channel,
    source: &SchemaSource,
    method: &str,
    options: CallOptions,
    stdin: R,
    out: &mut (impl Write + Send),
) -> Result<(), Error>
where
    R: AsyncBufRead + Unpin + Send + 'static,
{
    let (method, path) = resolve(channel, source, method).await?;
    let metadata = metadata(&options.headers)?;
    let (tx, mut rx) = mpsc::channel(1);
    tokio::spawn(feed(options.data.clone(), stdin, method.input(), tx));
    let request = |message| with_head(message, &metadata, options.timeout);
    let grpc = Grpc::new(channel.clone());
    let output = method.output();
    if !method.is_client_streaming() {
        // One message: the first given (an empty one when none is).
        let message = match rx.recv().await {
            Some(message) => message?,
            None => Raw::default(),
        };
        return if method.is_server_streaming() {
            let response = grpc
                .server_streaming::<Raw, Raw>(request(message), path)
                .await
                .map_err(failed)?;
            let headers = options.verbose.then(|| response.metadata().clone());
            print_stream(
                out,
                options.verbose,
                &output,
                headers,
                response.into_inner(),
            )
            .await
        } else {
            let response = grpc
                .unary::<Raw, Raw>(request(message), path)
                .await
                .map_err(failed)?;
            print_single(out, options.verbose, &output, &response)
        };
    }
    // Streams: messages go out as they are read; a bad one ends the stream and the call.
    let (ok_tx, ok_rx) = mpsc::channel::<Raw>(1);
    let bad = tokio::spawn(async move {
        while let Some(next) = rx.recv().await {
            match next {
                Ok(message) => {
                    if ok_tx.send(message).await.is_err() {
                        return None;
                    }
                }
                Err(e) => return Some(e),
            }
        }
        None
    });
    let requests = with_head(ReceiverStream::new(ok_rx), &metadata, options.timeout);
    if method.is_server_streaming() {
        let response = grpc
            .streaming::<_, Raw, Raw>(requests, path)
            .await
            .map_err(failed)?;
        print_stream(out, options.verbose, &output, None, response.into_inner()).await?;
    } else {
        let response = grpc
            .client_streaming::<_, Raw, Raw>(requests, path)
            .await
            .map_err(failed)?;
        print_single(out, options.verbose, &output, &response)?;
    }
    if let Ok(Some(e)) = bad.await {
        return Err(e);
    }
    Ok(())
}
