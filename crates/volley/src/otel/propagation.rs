//! W3C trace context (`traceparent`, `tracestate`) between `grpc.client` and `grpc.server`
//! spans, written and read here rather than through a global propagator, so that it needs no
//! setup.

use std::str::FromStr;

use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::MetadataMap;

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// Adds `span`'s OpenTelemetry context to `metadata` (nothing when the span has no valid
/// context: no OpenTelemetry layer records it).
pub(crate) fn inject(span: &tracing::Span, metadata: &mut MetadataMap) {
    let cx = span.context();
    let otel = cx.span();
    let context = otel.span_context();
    if !context.is_valid() {
        return;
    }
    let traceparent = format!(
        "00-{}-{}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags().to_u8() & TraceFlags::SAMPLED.to_u8()
    );
    // Both values are visible ASCII: they cannot fail.
    let _ = metadata.insert(TRACEPARENT, &traceparent);
    let state = context.trace_state().header();
    if !state.is_empty() {
        let _ = metadata.insert(TRACESTATE, &state);
    }
}

/// Makes the context in `headers` (if valid) `span`'s parent.
pub(crate) fn extract(span: &tracing::Span, headers: &http::HeaderMap) {
    let Some(context) = remote_context(headers) else {
        return;
    };
    let _ = span.set_parent(Context::new().with_remote_span_context(context));
}

/// The remote span context `headers` carry, if their `traceparent` is valid (W3C Trace
/// Context, level 1: `version-traceid-parentid-flags`, where a future version may append
/// fields).
fn remote_context(headers: &http::HeaderMap) -> Option<SpanContext> {
    let parent = headers.get(TRACEPARENT)?.to_str().ok()?.trim();
    let mut parts = parent.split('-');
    let (version, trace_id, span_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let lower_hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !lower_hex(version, 2) || version == "ff" {
        return None;
    }
    // Version 00 has exactly four fields; later versions may add more.
    if version == "00" && parts.next().is_some() {
        return None;
    }
    if !lower_hex(trace_id, 32) || !lower_hex(span_id, 16) || !lower_hex(flags, 2) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace_id).ok()?;
    let span_id = SpanId::from_hex(span_id).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()? & TraceFlags::SAMPLED.to_u8();
    let state = headers
        .get_all(TRACESTATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    // An invalid tracestate is dropped, the traceparent kept (W3C, section 3.3.1.1).
    let state = TraceState::from_str(&state).unwrap_or_default();
    Some(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags),
        true,
        state,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(traceparent: &str, tracestate: Option<&str>) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(TRACEPARENT, traceparent.parse().expect("ascii"));
        if let Some(state) = tracestate {
            headers.insert(TRACESTATE, state.parse().expect("ascii"));
        }
        headers
    }

    #[test]
    fn the_w3c_example_is_read() {
        let context = remote_context(&headers(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
        ))
        .expect("valid");
        assert_eq!(
            context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(context.span_id().to_string(), "00f067aa0ba902b7");
        assert!(context.is_sampled() && context.is_remote());
        assert_eq!(context.trace_state().get("congo"), Some("t61rcWkgMzE"));
    }

    #[test]
    fn invalid_traceparents_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(remote_context(&headers(bad, None)).is_none(), "{bad:?}");
        }
        // A later version may append fields.
        assert!(
            remote_context(&headers(
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later",
                None
            ))
            .is_some()
        );
    }

    #[test]
    fn an_invalid_tracestate_keeps_the_parent() {
        let context = remote_context(&headers(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            Some("not a valid=state=="),
        ))
        .expect("valid traceparent");
        assert!(!context.is_sampled());
        assert_eq!(context.trace_state().header(), "");
    }
}
