//! Google's rich error model for Volley: a failed call's [`volley::Status`] can carry a
//! `google.rpc.Status` in `grpc-status-details-bin`, whose `details` are typed messages (the
//! standard ones of `google/rpc/error_details.proto`: [`ErrorInfo`], [`RetryInfo`],
//! [`DebugInfo`], [`QuotaFailure`], [`PreconditionFailure`], [`BadRequest`], [`RequestInfo`],
//! [`ResourceInfo`], [`Help`], [`LocalizedMessage`], or any other message as an `Any`). This is
//! what grpc-go's `status.WithDetails`/`Details`, tonic-types and Python's `grpcio-status` read
//! and write.
//!
//! ```
//! use volley::{Code, Status};
//! use volley_types::{BadRequest, StatusExt, bad_request::FieldViolation};
//!
//! let status = Status::with_error_details(
//!     Code::InvalidArgument,
//!     "name must not be empty",
//!     [volley_types::detail(&BadRequest {
//!         field_violations: vec![FieldViolation {
//!             field: "name".into(),
//!             description: "empty".into(),
//!             ..Default::default()
//!         }],
//!     })],
//! );
//! let bad: BadRequest = status.get_detail().expect("attached");
//! assert_eq!(bad.field_violations[0].field, "name");
//! ```
//!
//! The code and message of a call are `grpc-status` and `grpc-message`; when the
//! `google.rpc.Status` inside the details says otherwise, the headers win (as in grpc-go), and
//! only its `details` are read.

use bytes::Bytes;
use prost::Message;
use prost_types::Any;
use volley::{Code, Status};

/// `google.rpc` as generated from the crate's own copies of `status.proto` and
/// `error_details.proto`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
}

pub use pb::{
    BadRequest, DebugInfo, ErrorInfo, Help, LocalizedMessage, PreconditionFailure, QuotaFailure,
    RequestInfo, ResourceInfo, RetryInfo, bad_request, help, precondition_failure, quota_failure,
};

/// A message that can travel as an error detail: its `Any` type URL.
pub trait ErrorDetail: Message + Default {
    /// `type.googleapis.com/` and the message's full protobuf name.
    const TYPE_URL: &'static str;
}

macro_rules! details {
    ($($ty:ident),* $(,)?) => {$(
        impl ErrorDetail for pb::$ty {
            const TYPE_URL: &'static str = concat!("type.googleapis.com/google.rpc.", stringify!($ty));
        }
    )*};
}

details!(
    ErrorInfo,
    RetryInfo,
    DebugInfo,
    QuotaFailure,
    PreconditionFailure,
    BadRequest,
    RequestInfo,
    ResourceInfo,
    Help,
    LocalizedMessage,
);

/// `detail` as an `Any`, to attach with [`StatusExt::with_error_details`].
pub fn detail<T: ErrorDetail>(detail: &T) -> Any {
    Any {
        type_url: T::TYPE_URL.to_owned(),
        value: detail.encode_to_vec(),
    }
}

/// Error details on [`volley::Status`].
pub trait StatusExt: Sized {
    /// A status whose `grpc-status-details-bin` is a `google.rpc.Status` with `code`,
    /// `message` and `details` (each an `Any`: [`detail`] makes one of a standard detail).
    fn with_error_details(
        code: Code,
        message: impl Into<String>,
        details: impl IntoIterator<Item = Any>,
    ) -> Self;

    /// The `google.rpc.Status` in `grpc-status-details-bin`: `None` when there are no details,
    /// an error when they are not a `google.rpc.Status`.
    fn rpc_status(&self) -> Result<Option<pb::Status>, prost::DecodeError>;

    /// Every detail, as `Any`s (none when there are no details or they do not decode).
    fn details_any(&self) -> Vec<Any>;

    /// The first detail of type `T`, if there is one that decodes.
    fn get_detail<T: ErrorDetail>(&self) -> Option<T>;
}

impl StatusExt for Status {
    fn with_error_details(
        code: Code,
        message: impl Into<String>,
        details: impl IntoIterator<Item = Any>,
    ) -> Status {
        let message = message.into();
        let rpc = pb::Status {
            code: code as i32,
            message: message.clone(),
            details: details.into_iter().collect(),
        };
        Status::with_details(code, message, Bytes::from(rpc.encode_to_vec()))
    }

    fn rpc_status(&self) -> Result<Option<pb::Status>, prost::DecodeError> {
        if self.details().is_empty() {
            return Ok(None);
        }
        pb::Status::decode(&self.details()[..]).map(Some)
    }

    fn details_any(&self) -> Vec<Any> {
        self.rpc_status()
            .ok()
            .flatten()
            .map(|s| s.details)
            .unwrap_or_default()
    }

    fn get_detail<T: ErrorDetail>(&self) -> Option<T> {
        self.details_any()
            .iter()
            .filter(|any| any.type_url == T::TYPE_URL)
            .find_map(|any| T::decode(&any.value[..]).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_standard_detail_round_trips() {
        let status = Status::with_error_details(
            Code::FailedPrecondition,
            "no",
            [
                detail(&ErrorInfo {
                    reason: "STOCKOUT".into(),
                    domain: "example.com".into(),
                    metadata: [("sku".to_owned(), "42".to_owned())].into(),
                }),
                detail(&RetryInfo {
                    retry_delay: Some(prost_types::Duration {
                        seconds: 2,
                        nanos: 0,
                    }),
                }),
                detail(&Help {
                    links: vec![help::Link {
                        description: "docs".into(),
                        url: "https://example.com".into(),
                    }],
                }),
                Any {
                    type_url: "type.googleapis.com/other.Thing".into(),
                    value: vec![1, 2, 3],
                },
            ],
        );
        assert_eq!(status.code(), Code::FailedPrecondition);
        let info: ErrorInfo = status.get_detail().expect("ErrorInfo");
        assert_eq!(info.metadata["sku"], "42");
        let retry: RetryInfo = status.get_detail().expect("RetryInfo");
        assert_eq!(retry.retry_delay.map(|d| d.seconds), Some(2));
        assert!(status.get_detail::<Help>().is_some());
        assert!(status.get_detail::<BadRequest>().is_none());
        assert_eq!(status.details_any().len(), 4);
        assert_eq!(
            status.details_any()[3].type_url,
            "type.googleapis.com/other.Thing"
        );
        let rpc = status.rpc_status().expect("decodes").expect("present");
        assert_eq!(
            (rpc.code, rpc.message.as_str()),
            (Code::FailedPrecondition as i32, "no")
        );
        // A status without details has none; garbage details are an error, not a panic.
        assert_eq!(Status::not_found("x").rpc_status(), Ok(None));
        let garbage = Status::with_details(Code::Internal, "x", Bytes::from_static(&[0xff; 3]));
        assert!(garbage.rpc_status().is_err());
        assert!(garbage.details_any().is_empty());
    }

    #[test]
    fn type_urls_name_the_protobuf_messages() {
        assert_eq!(
            BadRequest::TYPE_URL,
            "type.googleapis.com/google.rpc.BadRequest"
        );
        assert_eq!(
            LocalizedMessage::TYPE_URL,
            "type.googleapis.com/google.rpc.LocalizedMessage"
        );
    }
}
