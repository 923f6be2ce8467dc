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
}

impl StreamError {
    /// The connection ended before it could be used (`why` says how).
    pub(crate) fn closed_early(why: &'static str) -> StreamError {
        StreamError(Repr::ClosedEarly(why))
    }

    /// A failure that is not h2's, with the status it ends the call with.
    #[cfg(feature = "tower")]
    pub(crate) fn other(status: Status) -> StreamError {
        StreamError(Repr::Other(status))
    }

    /// True when the peer (or the connection's end) reset this stream, as opposed to an I/O
    /// error.
    pub(crate) fn is_reset(&self) -> bool {
        matches!(&self.0, Repr::H2(e) if e.reason().is_some())
    }

    /// True when the server certainly did not process the stream, so that the request can be
    /// sent again elsewhere: the stream was refused (RST_STREAM REFUSED_STREAM), or it was
    /// above the last stream id of a graceful GOAWAY.
    pub(crate) fn is_unprocessed(&self) -> bool {
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
        }
    }
}

/// Why [`SendBody::send_flow_controlled`] stopped.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The peer reset the stream (or the connection went away).
    Reset,
    /// The caller's stop signal fired while waiting for flow-control window.
    Stopped,
}
