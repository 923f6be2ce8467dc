//! gRPC status codes and the `Status` every failed call carries.
//!
//! Wire forms follow `doc/PROTOCOL-HTTP2.md` (`grpc-status`, percent-encoded `grpc-message`,
//! `grpc-status-details-bin`); the HTTP and HTTP/2 mappings follow
//! `doc/http-grpc-status-mapping.md` and the RST_STREAM table of the protocol spec.

use std::fmt;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};

use crate::metadata::{MetadataMap, base64_decode, base64_encode};

pub(crate) const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");
pub(crate) const GRPC_MESSAGE: http::HeaderName = http::HeaderName::from_static("grpc-message");
pub(crate) const GRPC_STATUS_DETAILS: http::HeaderName =
    http::HeaderName::from_static("grpc-status-details-bin");

/// A gRPC status code, as listed in gRPC's `doc/statuscodes.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(i32)]
pub enum Code {
    /// Not an error; returned on success.
    Ok = 0,
    /// The operation was cancelled, typically by the caller.
    Cancelled = 1,
    /// Unknown error, or an error from an API that gives too little information.
    Unknown = 2,
    /// The client specified an invalid argument.
    InvalidArgument = 3,
    /// The deadline expired before the operation could complete.
    DeadlineExceeded = 4,
    /// Some requested entity was not found.
    NotFound = 5,
    /// The entity that a client attempted to create already exists.
    AlreadyExists = 6,
    /// The caller does not have permission to execute the operation.
    PermissionDenied = 7,
    /// Some resource has been exhausted (quota, message size, memory...).
    ResourceExhausted = 8,
    /// The system is not in a state required for the operation's execution.
    FailedPrecondition = 9,
    /// The operation was aborted, typically due to a concurrency issue.
    Aborted = 10,
    /// The operation was attempted past the valid range.
    OutOfRange = 11,
    /// The operation is not implemented or not supported.
    Unimplemented = 12,
    /// An invariant expected by the system was broken.
    Internal = 13,
    /// The service is currently unavailable; a retry may succeed.
    Unavailable = 14,
    /// Unrecoverable data loss or corruption.
    DataLoss = 15,
    /// The request does not have valid authentication credentials.
    Unauthenticated = 16,
}

impl Code {
    /// Every code, in numeric order.
    pub const ALL: [Code; 17] = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    /// The code for a number; numbers outside 0..=16 become [`Code::Unknown`], as the spec says.
    pub fn from_i32(n: i32) -> Code {
        usize::try_from(n)
            .ok()
            .and_then(|i| Code::ALL.get(i).copied())
            .unwrap_or(Code::Unknown)
    }

    /// The code's number on the wire.
    pub fn as_i32(self) -> i32 {
        self as i32
    }

    /// The upper-case name gRPC uses, such as `DEADLINE_EXCEEDED`.
    pub fn name(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }

    /// The code for an HTTP status of a response that carried no `grpc-status`
    /// (`doc/http-grpc-status-mapping.md`).
    pub fn from_http_status(status: u16) -> Code {
        match status {
            400 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::Unimplemented,
            429 | 502 | 503 | 504 => Code::Unavailable,
            _ => Code::Unknown,
        }
    }

    /// The code for an HTTP/2 RST_STREAM or GOAWAY error code (`doc/PROTOCOL-HTTP2.md`):
    /// REFUSED_STREAM (0x7) → UNAVAILABLE, CANCEL (0x8) → CANCELLED, ENHANCE_YOUR_CALM (0xb) →
    /// RESOURCE_EXHAUSTED, INADEQUATE_SECURITY (0xc) → PERMISSION_DENIED, others → INTERNAL.
    pub fn from_http2_error_code(error_code: u32) -> Code {
        match error_code {
            0x7 => Code::Unavailable,
            0x8 => Code::Cancelled,
            0xb => Code::ResourceExhausted,
            0xc => Code::PermissionDenied,
            _ => Code::Internal,
        }
    }

    fn header_value(self) -> HeaderValue {
        const NUMS: [&str; 17] = [
            "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15",
            "16",
        ];
        HeaderValue::from_static(NUMS[self as usize])
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<i32> for Code {
    fn from(n: i32) -> Code {
        Code::from_i32(n)
    }
}

/// The outcome of a call that did not succeed: a code, a message, optional binary details
/// (`grpc-status-details-bin`, usually an encoded `google.rpc.Status`) and the trailing metadata.
///
/// It is one pointer wide, so `Result<T, Status>` stays small on the success path.
#[derive(Clone)]
pub struct Status {
    inner: Box<StatusInner>,
}

#[derive(Clone)]
struct StatusInner {
    code: Code,
    message: String,
    details: Bytes,
    metadata: MetadataMap,
}

impl Status {
    /// A status with a code and a message.
    pub fn new(code: Code, message: impl Into<String>) -> Status {
        Status {
            inner: Box::new(StatusInner {
                code,
                message: message.into(),
                details: Bytes::new(),
                metadata: MetadataMap::new(),
            }),
        }
    }

    /// A status with binary details, sent as `grpc-status-details-bin`.
    pub fn with_details(code: Code, message: impl Into<String>, details: Bytes) -> Status {
        let mut status = Status::new(code, message);
        status.inner.details = details;
        status
    }

    /// A status with trailing metadata.
    pub fn with_metadata(code: Code, message: impl Into<String>, metadata: MetadataMap) -> Status {
        let mut status = Status::new(code, message);
        status.inner.metadata = metadata;
        status
    }

    /// The code.
    pub fn code(&self) -> Code {
        self.inner.code
    }

    /// The message, decoded from `grpc-message`.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The binary details (empty when there are none).
    pub fn details(&self) -> &Bytes {
        &self.inner.details
    }

    /// The trailing metadata sent or received with this status.
    pub fn metadata(&self) -> &MetadataMap {
        &self.inner.metadata
    }

    /// The trailing metadata, to add to before the status is returned from a handler.
    pub fn metadata_mut(&mut self) -> &mut MetadataMap {
        &mut self.inner.metadata
    }

    /// Builds a status of this code with a message and no details.
    fn of(code: Code, message: impl Into<String>) -> Status {
        Status::new(code, message)
    }
}

macro_rules! constructors {
    ($($(#[$doc:meta])* $name:ident => $code:ident,)*) => {
        impl Status {
            $(
                $(#[$doc])*
                pub fn $name(message: impl Into<String>) -> Status {
                    Status::of(Code::$code, message)
                }
            )*
        }
    };
}

constructors! {
    /// An OK status (used in trailers of successful calls).
    ok => Ok,
    /// A `CANCELLED` status.
    cancelled => Cancelled,
    /// An `UNKNOWN` status.
    unknown => Unknown,
    /// An `INVALID_ARGUMENT` status.
    invalid_argument => InvalidArgument,
    /// A `DEADLINE_EXCEEDED` status.
    deadline_exceeded => DeadlineExceeded,
    /// A `NOT_FOUND` status.
    not_found => NotFound,
    /// An `ALREADY_EXISTS` status.
    already_exists => AlreadyExists,
    /// A `PERMISSION_DENIED` status.
    permission_denied => PermissionDenied,
    /// A `RESOURCE_EXHAUSTED` status.
    resource_exhausted => ResourceExhausted,
    /// A `FAILED_PRECONDITION` status.
    failed_precondition => FailedPrecondition,
    /// An `ABORTED` status.
    aborted => Aborted,
    /// An `OUT_OF_RANGE` status.
    out_of_range => OutOfRange,
    /// An `UNIMPLEMENTED` status.
    unimplemented => Unimplemented,
    /// An `INTERNAL` status.
    internal => Internal,
    /// An `UNAVAILABLE` status.
    unavailable => Unavailable,
    /// A `DATA_LOSS` status.
    data_loss => DataLoss,
    /// An `UNAUTHENTICATED` status.
    unauthenticated => Unauthenticated,
}

impl Status {
    /// Writes `grpc-status`, `grpc-message`, `grpc-status-details-bin` and the metadata into
    /// a trailer (or Trailers-Only header) map.
    pub(crate) fn write_to(&self, headers: &mut HeaderMap) {
        headers.extend(self.inner.metadata.clone().into_headers());
        headers.insert(GRPC_STATUS, self.inner.code.header_value());
        if !self.inner.message.is_empty() {
            let encoded = percent_encode(&self.inner.message);
            if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(encoded)) {
                headers.insert(GRPC_MESSAGE, v);
            }
        }
        if !self.inner.details.is_empty()
            && let Ok(v) =
                HeaderValue::from_maybe_shared(Bytes::from(base64_encode(&self.inner.details)))
        {
            headers.insert(GRPC_STATUS_DETAILS, v);
        }
    }

    /// Reads a status out of trailers (or Trailers-Only headers), as a call does:
    /// `grpc-status`, the percent-decoded `grpc-message`, `grpc-status-details-bin`, and the
    /// rest as metadata. `None` when `grpc-status` is absent; a malformed one is UNKNOWN (as
    /// grpc-go treats it). For code that reads gRPC responses off the wire itself.
    pub fn from_header_map(headers: &HeaderMap) -> Option<Status> {
        Status::from_trailers(headers)
    }

    /// Reads a status out of trailers (or Trailers-Only headers). `None` when `grpc-status` is
    /// absent. A malformed `grpc-status` is UNKNOWN, as grpc-go treats it.
    pub(crate) fn from_trailers(headers: &HeaderMap) -> Option<Status> {
        let mut status = Status::read_trailers(headers)?;
        status.inner.metadata = MetadataMap::from_headers(headers.clone());
        Some(status)
    }

    /// [`Status::from_trailers`] that keeps `headers` as the status's metadata rather than a
    /// copy of them; `Err(headers)` when `grpc-status` is absent.
    pub(crate) fn from_trailers_owned(headers: HeaderMap) -> Result<Status, HeaderMap> {
        match Status::read_trailers(&headers) {
            Some(mut status) => {
                status.inner.metadata = MetadataMap::from_headers(headers);
                Ok(status)
            }
            None => Err(headers),
        }
    }

    /// Takes the status's metadata out (leaving it empty).
    pub(crate) fn take_metadata(&mut self) -> MetadataMap {
        std::mem::take(&mut self.inner.metadata)
    }

    /// The status in `headers`, without its metadata.
    fn read_trailers(headers: &HeaderMap) -> Option<Status> {
        let raw = headers.get(GRPC_STATUS)?;
        let code = std::str::from_utf8(raw.as_bytes())
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        let mut status = match code {
            Some(n) => Status::new(Code::from_i32(n), ""),
            None => Status::unknown(format!(
                "malformed grpc-status: {}",
                crate::untrusted::Quoted(raw.as_bytes())
            )),
        };
        if let Some(m) = headers.get(GRPC_MESSAGE) {
            status.inner.message = percent_decode(m.as_bytes());
        }
        if let Some(d) = headers.get(GRPC_STATUS_DETAILS) {
            match base64_decode(d.as_bytes()) {
                Ok(details) => status.inner.details = details.into(),
                // As grpc-go: details that cannot be read make the call INTERNAL, rather than
                // a status whose details silently vanished.
                Err(_) => {
                    status = Status::internal(format!(
                        "malformed grpc-status-details-bin: {}",
                        crate::untrusted::Quoted(d.as_bytes())
                    ));
                }
            }
        }
        Some(status)
    }

    /// The status for an HTTP response that had no `grpc-status`.
    pub(crate) fn from_http_status(status: http::StatusCode) -> Status {
        Status::new(
            Code::from_http_status(status.as_u16()),
            format!("HTTP status {status} with no grpc-status"),
        )
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Status");
        d.field("code", &self.inner.code)
            .field("message", &self.inner.message);
        if !self.inner.details.is_empty() {
            d.field("details", &self.inner.details);
        }
        if !self.inner.metadata.is_empty() {
            d.field("metadata", &self.inner.metadata);
        }
        d.finish()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.inner.message.is_empty() {
            write!(f, "{}", self.inner.code)
        } else {
            write!(f, "{}: {}", self.inner.code, self.inner.message)
        }
    }
}

impl std::error::Error for Status {}

impl From<std::io::Error> for Status {
    fn from(err: std::io::Error) -> Status {
        Status::unavailable(err.to_string())
    }
}

/// Percent-encodes a `grpc-message`: every byte outside printable ASCII (0x20..=0x7E), and `%`
/// itself, becomes `%XX` over the UTF-8 bytes.
pub(crate) fn percent_encode(message: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        }
    }
    out
}

/// Decodes a percent-encoded `grpc-message`. Never fails: a `%` not followed by two hex digits
/// is kept as it is, and bytes that are not UTF-8 become U+FFFD, as the spec asks.
pub(crate) fn percent_decode(raw: &[u8]) -> String {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%'
            && i + 2 < raw.len()
            && let (Some(h), Some(l)) = (hex(raw[i + 1]), hex(raw[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(raw[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_by_number_and_name() {
        for (i, code) in Code::ALL.iter().enumerate() {
            assert_eq!(code.as_i32(), i as i32);
            assert_eq!(Code::from_i32(i as i32), *code);
            assert_eq!(code.to_string(), code.name());
        }
        assert_eq!(Code::from_i32(17), Code::Unknown);
        assert_eq!(Code::from_i32(-1), Code::Unknown);
        assert_eq!(Code::DeadlineExceeded.name(), "DEADLINE_EXCEEDED");
    }

    #[test]
    fn http_status_mapping() {
        let table = [
            (400, Code::Internal),
            (401, Code::Unauthenticated),
            (403, Code::PermissionDenied),
            (404, Code::Unimplemented),
            (429, Code::Unavailable),
            (502, Code::Unavailable),
            (503, Code::Unavailable),
            (504, Code::Unavailable),
            (500, Code::Unknown),
            (200, Code::Unknown),
        ];
        for (http, code) in table {
            assert_eq!(Code::from_http_status(http), code, "{http}");
        }
    }

    #[test]
    fn rst_stream_mapping() {
        assert_eq!(Code::from_http2_error_code(0x7), Code::Unavailable);
        assert_eq!(Code::from_http2_error_code(0x8), Code::Cancelled);
        assert_eq!(Code::from_http2_error_code(0xb), Code::ResourceExhausted);
        assert_eq!(Code::from_http2_error_code(0xc), Code::PermissionDenied);
        assert_eq!(Code::from_http2_error_code(0x1), Code::Internal);
        assert_eq!(Code::from_http2_error_code(0x2), Code::Internal);
    }

    #[test]
    fn percent_encoding_round_trips() {
        let msg = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n";
        let enc = percent_encode(msg);
        assert!(enc.bytes().all(|b| (0x20..=0x7e).contains(&b)));
        assert_eq!(percent_decode(enc.as_bytes()), msg);
        assert_eq!(percent_encode("a%b"), "a%25b");
        assert_eq!(percent_encode("plain"), "plain");
    }

    #[test]
    fn percent_decoding_never_fails() {
        assert_eq!(percent_decode(b"%"), "%");
        assert_eq!(percent_decode(b"%4"), "%4");
        assert_eq!(percent_decode(b"%zz ok"), "%zz ok");
        assert_eq!(percent_decode(b"%41%42"), "AB");
        assert_eq!(percent_decode(b"%FF"), "\u{FFFD}");
        assert_eq!(percent_decode(b"end%2"), "end%2");
    }

    #[test]
    fn status_trailers_round_trip() {
        let mut md = MetadataMap::new();
        md.insert("x-trace", "abc").expect("valid key");
        let mut s =
            Status::with_details(Code::NotFound, "no such ☺", Bytes::from_static(b"\0\x01"));
        *s.metadata_mut() = md;
        let mut h = HeaderMap::new();
        s.write_to(&mut h);
        assert_eq!(h.get("grpc-status").map(|v| v.as_bytes()), Some(&b"5"[..]));
        let back = Status::from_trailers(&h).expect("status present");
        assert_eq!(back.code(), Code::NotFound);
        assert_eq!(back.message(), "no such ☺");
        assert_eq!(&back.details()[..], b"\0\x01");
        assert_eq!(back.metadata().get("x-trace"), Some("abc"));
        assert!(back.metadata().get("grpc-status").is_none());
    }

    #[test]
    fn malformed_grpc_status_is_unknown() {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from_static("abc"));
        assert_eq!(
            Status::from_trailers(&h).map(|s| s.code()),
            Some(Code::Unknown)
        );
        h.insert("grpc-status", HeaderValue::from_static("99"));
        assert_eq!(
            Status::from_trailers(&h).map(|s| s.code()),
            Some(Code::Unknown)
        );
    }

    /// When the `google.rpc.Status` in `grpc-status-details-bin` disagrees with
    /// `grpc-status`/`grpc-message`, the headers win (as in grpc-go): the code and message
    /// are the headers', and the details are kept as they came.
    #[test]
    fn status_headers_win_over_the_details_code_and_message() {
        // google.rpc.Status { code: 3, message: "inner" }, encoded by hand.
        let inner = [0x08, 0x03, 0x12, 0x05, b'i', b'n', b'n', b'e', b'r'];
        let mut h = HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from_static("5"));
        h.insert("grpc-message", HeaderValue::from_static("header"));
        let encoded = base64_encode(&inner);
        h.insert(
            "grpc-status-details-bin",
            HeaderValue::from_str(&encoded).expect("base64 is ASCII"),
        );
        let status = Status::from_trailers(&h).expect("status present");
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "header");
        assert_eq!(&status.details()[..], &inner[..]);
    }

    #[test]
    fn unreadable_status_details_are_internal() {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from_static("5"));
        h.insert(
            "grpc-status-details-bin",
            HeaderValue::from_static("!!not base64!!"),
        );
        let status = Status::from_trailers(&h).expect("status present");
        assert_eq!(status.code(), Code::Internal);
        assert!(
            status.message().contains("grpc-status-details-bin"),
            "{status}"
        );
        let long = "abc".repeat(10_000);
        h.insert("grpc-status", HeaderValue::from_str(&long).expect("ascii"));
        let status = Status::from_trailers(&h).expect("status present");
        assert!(status.message().len() < 400, "{}", status.message().len());
    }
}
