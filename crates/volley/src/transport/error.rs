//! How a stream fails: [`StreamError`] (and the status it ends a call with), and
//! [`SendError`].

use crate::{Code, Status};

/// A failure on a stream or its connection.
#[derive(Debug)]
pub(crate) struct StreamError(Repr);

#[derive(Debug)]
enum Repr {
    H2(h2::Error),
    /// The connection closed before it was established.
    ClosedEarly(&'static str),
    /// A body that is not an h2 stream failed, or its reader went away (tower).
    #[cfg(feature = "tower")]
    Other(Status),
    /// A stream of Volley's own engine failed.
    #[cfg(feature = "engine")]
    Engine(Failure),
    /// The engine's socket failed.
    #[cfg(feature = "engine")]
    Io(std::io::Error),
}

impl StreamError {
    /// The connection ended before it could be used (`why` says how).
    pub(crate) fn closed_early(why: &'static str) -> StreamError {
        StreamError(Repr::ClosedEarly(why))
    }

    /// A stream of Volley's own engine failed.
    #[cfg(feature = "engine")]
    pub(crate) fn engine(failure: Failure) -> StreamError {
        StreamError(Repr::Engine(failure))
    }

    /// The engine's socket failed.
    #[cfg(feature = "engine")]
    pub(crate) fn io(err: std::io::Error) -> StreamError {
        StreamError(Repr::Io(err))
    }

    /// A failure that is not h2's, with the status it ends the call with.
    #[cfg(feature = "tower")]
    pub(crate) fn other(status: Status) -> StreamError {
        StreamError(Repr::Other(status))
    }

    /// True when the peer (or the connection's end) reset this stream, as opposed to an I/O
    /// error.
    pub(crate) fn is_reset(&self) -> bool {
        match &self.0 {
            Repr::H2(e) => e.reason().is_some(),
            #[cfg(feature = "engine")]
            Repr::Engine(_) => true,
            _ => false,
        }
    }

    /// True when the server certainly did not process the stream, so that the request can be
    /// sent again elsewhere: the stream was refused (RST_STREAM REFUSED_STREAM), or it was
    /// above the last stream id of a graceful GOAWAY.
    pub(crate) fn is_unprocessed(&self) -> bool {
        #[cfg(feature = "engine")]
        match &self.0 {
            Repr::Engine(Failure::Reset { code, by_peer }) => {
                return *by_peer && *code == REFUSED_STREAM;
            }
            Repr::Engine(Failure::Refused(_)) => return true,
            _ => {}
        }
        let Repr::H2(err) = &self.0 else {
            return false;
        };
        err.is_remote()
            && match err.reason() {
                Some(h2::Reason::REFUSED_STREAM) => err.is_reset(),
                Some(h2::Reason::NO_ERROR) => err.is_go_away(),
                _ => false,
            }
    }

    /// The status this failure ends a call with (`doc/PROTOCOL-HTTP2.md`: RST_STREAM codes
    /// map by its table; a GOAWAY, whatever its code, and connection failures mean the
    /// connection is gone: UNAVAILABLE, as in grpc-go).
    pub(crate) fn to_status(&self) -> Status {
        let err = match &self.0 {
            Repr::H2(err) => err,
            Repr::ClosedEarly(why) => {
                return Status::unavailable(format!("connection error: {why}"));
            }
            #[cfg(feature = "tower")]
            Repr::Other(status) => return status.clone(),
            #[cfg(feature = "engine")]
            Repr::Engine(Failure::Reset { code, .. }) => {
                return Status::new(
                    Code::from_http2_error_code(*code),
                    format!("HTTP/2 RST_STREAM with error code {}", reason_name(*code)),
                );
            }
            #[cfg(feature = "engine")]
            Repr::Engine(Failure::Closed(why) | Failure::Refused(why)) => {
                return Status::unavailable(format!("connection error: {why}"));
            }
            #[cfg(feature = "engine")]
            Repr::Io(err) => return Status::unavailable(format!("connection error: {err}")),
        };
        if let Some(reason) = err.reason() {
            let code = if err.is_go_away() {
                Code::Unavailable
            } else {
                Code::from_http2_error_code(reason.into())
            };
            let kind = if err.is_go_away() {
                "GOAWAY"
            } else {
                "RST_STREAM"
            };
            return Status::new(code, format!("HTTP/2 {kind} with error code {reason:?}"));
        }
        if err.is_io() {
            return Status::unavailable(format!("connection error: {err}"));
        }
        Status::internal(format!("HTTP/2 error: {err}"))
    }
}

impl From<h2::Error> for StreamError {
    fn from(err: h2::Error) -> StreamError {
        StreamError(Repr::H2(err))
    }
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Repr::H2(e) => e.fmt(f),
            Repr::ClosedEarly(why) => f.write_str(why),
            #[cfg(feature = "tower")]
            Repr::Other(status) => status.fmt(f),
            #[cfg(feature = "engine")]
            Repr::Engine(Failure::Reset { code, .. }) => {
                write!(f, "stream reset with {}", reason_name(*code))
            }
            #[cfg(feature = "engine")]
            Repr::Engine(Failure::Closed(why) | Failure::Refused(why)) => f.write_str(why),
            #[cfg(feature = "engine")]
            Repr::Io(err) => err.fmt(f),
        }
    }
}

/// How a stream of Volley's own engine failed, as its handles see it.
#[cfg(feature = "engine")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// RST_STREAM with this code: sent by the peer (`by_peer`), or by this side because the
    /// peer broke a rule on the stream.
    Reset { code: u32, by_peer: bool },
    /// The connection ended (closed, failed, or went away) with the stream open.
    Closed(&'static str),
    /// Client side: the stream was never sent (the connection went away or failed before
    /// it had room for it), so it may be sent again elsewhere.
    Refused(&'static str),
}

/// Why [`SendBody::send_flow_controlled`] stopped.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The peer reset the stream (or the connection went away).
    Reset,
    /// The caller's stop signal fired while waiting for flow-control window.
    Stopped,
}

/// RST_STREAM's REFUSED_STREAM code.
#[cfg(feature = "engine")]
const REFUSED_STREAM: u32 = 0x7;

/// An HTTP/2 error code's name (RFC 9113 §7), as h2 prints it (`CANCEL`, ...).
#[cfg(feature = "engine")]
fn reason_name(code: u32) -> String {
    const NAMES: [&str; 14] = [
        "NO_ERROR",
        "PROTOCOL_ERROR",
        "INTERNAL_ERROR",
        "FLOW_CONTROL_ERROR",
        "SETTINGS_TIMEOUT",
        "STREAM_CLOSED",
        "FRAME_SIZE_ERROR",
        "REFUSED_STREAM",
        "CANCEL",
        "COMPRESSION_ERROR",
        "CONNECT_ERROR",
        "ENHANCE_YOUR_CALM",
        "INADEQUATE_SECURITY",
        "HTTP_1_1_REQUIRED",
    ];
    match NAMES.get(code as usize) {
        Some(name) => (*name).to_owned(),
        None => format!("Reason({code})"),
    }
}
