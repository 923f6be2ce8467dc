//! Custom metadata: the user's own headers and trailers.
//!
//! Per `doc/PROTOCOL-HTTP2.md`, keys are `[0-9a-z-_.]+`; a key ending in `-bin` carries binary
//! values, base64-encoded on the wire (emitted unpadded, accepted padded or not); other values
//! are printable ASCII. Keys starting with `grpc-` are reserved for gRPC itself.

use std::fmt;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};

const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

pub(crate) fn base64_encode(data: &[u8]) -> String {
    BASE64.encode(data)
}

pub(crate) fn base64_decode(data: &[u8]) -> Result<Vec<u8>, InvalidMetadata> {
    // Some peers emit trailing whitespace or padding; both are accepted.
    let trimmed = data.trim_ascii();
    BASE64
        .decode(trimmed)
        .map_err(|e| InvalidMetadata::new(format!("invalid base64 in binary metadata: {e}")))
}

/// Headers that gRPC or HTTP/2 own; they never show up as, and cannot be set as, metadata.
const RESERVED: &[&str] = &[
    "content-type",
    "te",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// `grpc-` headers that the framework consumes itself; other `grpc-` headers stay visible.
const CONSUMED_GRPC: &[&str] = &[
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    "grpc-timeout",
    "grpc-encoding",
    "grpc-accept-encoding",
    "grpc-message-type",
];

/// Keys whose values are credentials: `Debug` prints them as `<redacted>`, and they are sent
/// as never-indexed HPACK literals. [`MetadataMap::set_sensitive`] adds keys of your own.
const SENSITIVE: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

fn is_sensitive_key(key: &str) -> bool {
    SENSITIVE.contains(&key)
}

/// Why a metadata key or value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidMetadata {
    reason: String,
}

impl InvalidMetadata {
    fn new(reason: impl Into<String>) -> InvalidMetadata {
        InvalidMetadata {
            reason: reason.into(),
        }
    }
}

impl fmt::Display for InvalidMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for InvalidMetadata {}

/// One metadata value as read back: ASCII text, or the decoded bytes of a `-bin` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataValue<'a> {
    /// The value of an ASCII key.
    Ascii(&'a str),
    /// The decoded value of a `-bin` key.
    Binary(Bytes),
}

/// A multimap of gRPC metadata (request headers, response headers or trailers).
#[derive(Clone, Default)]
pub struct MetadataMap {
    headers: HeaderMap,
    /// The headers came from the peer and may still hold the ones gRPC and HTTP/2 consume
    /// ([`RESERVED`], [`CONSUMED_GRPC`]): every read skips them, and they are dropped only if
    /// the map is sent on. Removing them on receipt cost a hash and a shift per header on
    /// every call, for maps that are mostly never read.
    received: bool,
}

/// A received header that is not metadata.
fn is_hidden(key: &str) -> bool {
    RESERVED.contains(&key) || CONSUMED_GRPC.contains(&key)
}

fn is_binary_key(key: &str) -> bool {
    key.ends_with("-bin")
}

/// The trailer a server sets to ask for a retry after so many milliseconds, or (negative)
/// for none (gRFC A6).
pub(crate) const GRPC_RETRY_PUSHBACK_MS: &str = "grpc-retry-pushback-ms";

fn validate_key(key: &str) -> Result<HeaderName, InvalidMetadata> {
    if key.is_empty() {
        return Err(InvalidMetadata::new("metadata key is empty"));
    }
    if let Some(c) = key
        .chars()
        .find(|c| !matches!(c, '0'..='9' | 'a'..='z' | '-' | '_' | '.'))
    {
        return Err(InvalidMetadata::new(format!(
            "metadata key {key:?} has {c:?}; keys are [0-9a-z-_.]"
        )));
    }
    // gRPC's own keys, except those an application sets itself: a server's retry pushback
    // (gRFC A6).
    if key.starts_with("grpc-") && key != GRPC_RETRY_PUSHBACK_MS {
        return Err(InvalidMetadata::new(format!(
            "metadata key {key:?} is reserved: grpc- keys belong to gRPC"
        )));
    }
    if RESERVED.contains(&key) {
        return Err(InvalidMetadata::new(format!(
            "metadata key {key:?} is reserved by HTTP/2 or gRPC"
        )));
    }
    HeaderName::from_bytes(key.as_bytes())
        .map_err(|e| InvalidMetadata::new(format!("metadata key {key:?}: {e}")))
}

fn ascii_value(key: &str, value: &str) -> Result<HeaderValue, InvalidMetadata> {
    if is_binary_key(key) {
        return Err(InvalidMetadata::new(format!(
            "metadata key {key:?} ends in -bin: use insert_bin/append_bin"
        )));
    }
    if let Some(b) = value.bytes().find(|b| !(0x20..=0x7e).contains(b)) {
        return Err(InvalidMetadata::new(format!(
            "metadata value for {key:?} has byte 0x{b:02x}; ASCII values are printable (0x20-0x7E)"
        )));
    }
    let mut value =
        HeaderValue::from_str(value).map_err(|e| InvalidMetadata::new(format!("{key:?}: {e}")))?;
    value.set_sensitive(is_sensitive_key(key));
    Ok(value)
}

fn binary_value(key: &str, value: &[u8]) -> Result<HeaderValue, InvalidMetadata> {
    if !is_binary_key(key) {
        return Err(InvalidMetadata::new(format!(
            "binary metadata needs a key ending in -bin, not {key:?}"
        )));
    }
    HeaderValue::from_maybe_shared(Bytes::from(base64_encode(value)))
        .map_err(|e| InvalidMetadata::new(format!("{key:?}: {e}")))
}

/// A binary metadata value as it goes on the wire (unpadded base64).
pub(crate) fn binary_header_value(value: &[u8]) -> Result<HeaderValue, InvalidMetadata> {
    HeaderValue::from_maybe_shared(Bytes::from(base64_encode(value)))
        .map_err(|e| InvalidMetadata::new(e.to_string()))
}

impl MetadataMap {
    /// An empty map.
    pub fn new() -> MetadataMap {
        MetadataMap::default()
    }

    /// Wraps received headers; those that gRPC and HTTP/2 consume themselves are hidden.
    pub(crate) fn from_headers(headers: HeaderMap) -> MetadataMap {
        MetadataMap {
            headers,
            received: true,
        }
    }

    /// The headers to send: the metadata only (a received map drops its hidden headers now).
    pub(crate) fn into_headers(self) -> HeaderMap {
        let mut headers = self.headers;
        if self.received {
            let hidden: Vec<HeaderName> = headers
                .keys()
                .filter(|k| is_hidden(k.as_str()))
                .cloned()
                .collect();
            for name in hidden {
                headers.remove(name);
            }
        }
        headers
    }

    /// True when `key` is one of the received headers that are not metadata.
    fn hides(&self, key: &str) -> bool {
        self.received && is_hidden(key)
    }

    /// The headers that are metadata, with their values.
    fn visible(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.headers.iter().filter(|(k, _)| !self.hides(k.as_str()))
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        if self.received {
            self.visible().count()
        } else {
            self.headers.len()
        }
    }

    /// True when there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets an ASCII value, replacing any values of that key.
    pub fn insert(&mut self, key: &str, value: &str) -> Result<(), InvalidMetadata> {
        let name = validate_key(key)?;
        let value = ascii_value(key, value)?;
        self.headers.insert(name, value);
        Ok(())
    }

    /// Adds an ASCII value, keeping earlier values of that key.
    pub fn append(&mut self, key: &str, value: &str) -> Result<(), InvalidMetadata> {
        let name = validate_key(key)?;
        let value = ascii_value(key, value)?;
        self.headers.append(name, value);
        Ok(())
    }

    /// Sets a binary value under a `-bin` key, replacing any values of that key.
    pub fn insert_bin(&mut self, key: &str, value: &[u8]) -> Result<(), InvalidMetadata> {
        let name = validate_key(key)?;
        let value = binary_value(key, value)?;
        self.headers.insert(name, value);
        Ok(())
    }

    /// Adds a binary value under a `-bin` key, keeping earlier values of that key.
    pub fn append_bin(&mut self, key: &str, value: &[u8]) -> Result<(), InvalidMetadata> {
        let name = validate_key(key)?;
        let value = binary_value(key, value)?;
        self.headers.append(name, value);
        Ok(())
    }

    /// The first ASCII value of a key. `None` for absent keys, `-bin` keys and values that are
    /// not valid ASCII.
    pub fn get(&self, key: &str) -> Option<&str> {
        if is_binary_key(key) || self.hides(key) {
            return None;
        }
        self.headers.get(key).and_then(|v| v.to_str().ok())
    }

    /// Every ASCII value of a key, in the order received.
    pub fn get_all(&self, key: &str) -> impl Iterator<Item = &str> {
        let skip = is_binary_key(key) || self.hides(key);
        self.headers
            .get_all(key)
            .iter()
            .filter(move |_| !skip)
            .filter_map(|v| v.to_str().ok())
    }

    /// The first value of a `-bin` key, decoded. `None` when absent; an error when the peer sent
    /// invalid base64.
    pub fn get_bin(&self, key: &str) -> Option<Result<Bytes, InvalidMetadata>> {
        if !is_binary_key(key) || self.hides(key) {
            return None;
        }
        self.headers
            .get(key)
            .map(|v| base64_decode(v.as_bytes()).map(Bytes::from))
    }

    /// Every value of a `-bin` key, decoded.
    pub fn get_all_bin(&self, key: &str) -> Vec<Result<Bytes, InvalidMetadata>> {
        if !is_binary_key(key) || self.hides(key) {
            return Vec::new();
        }
        self.headers
            .get_all(key)
            .iter()
            .map(|v| base64_decode(v.as_bytes()).map(Bytes::from))
            .collect()
    }

    /// True when the key has at least one value.
    pub fn contains_key(&self, key: &str) -> bool {
        !self.hides(key) && self.headers.contains_key(key)
    }

    /// Removes every value of a key; true when there was one.
    pub fn remove(&mut self, key: &str) -> bool {
        !self.hides(key) && self.headers.remove(key).is_some()
    }

    /// The distinct keys.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.headers
            .keys()
            .map(|k| k.as_str())
            .filter(|k| !self.hides(k))
    }

    /// Every (key, value) pair; `-bin` values are decoded (invalid base64 is skipped).
    pub fn iter(&self) -> impl Iterator<Item = (&str, MetadataValue<'_>)> {
        self.visible().filter_map(|(k, v)| {
            let key = k.as_str();
            if is_binary_key(key) {
                base64_decode(v.as_bytes())
                    .ok()
                    .map(|b| (key, MetadataValue::Binary(Bytes::from(b))))
            } else {
                v.to_str().ok().map(|s| (key, MetadataValue::Ascii(s)))
            }
        })
    }

    /// Marks every value of `key` as a secret: `Debug` of the map prints `<redacted>` for it,
    /// and HTTP/2 sends it as a never-indexed literal (no HPACK table keeps it). Values added
    /// later are not marked. `authorization`, `proxy-authorization`, `cookie` and `set-cookie`
    /// are always treated so.
    pub fn set_sensitive(&mut self, key: &str) {
        let Ok(name) = HeaderName::from_bytes(key.as_bytes()) else {
            return;
        };
        if self.hides(key) {
            return;
        }
        if let http::header::Entry::Occupied(mut entry) = self.headers.entry(name) {
            for value in entry.iter_mut() {
                value.set_sensitive(true);
            }
        }
    }

    /// Adds every value of `other` to this map.
    pub fn merge(&mut self, other: MetadataMap) {
        self.headers.extend(other.into_headers());
    }
}

/// Prints the metadata with credentials redacted: the values of `authorization`,
/// `proxy-authorization`, `cookie`, `set-cookie` and of keys marked with
/// [`MetadataMap::set_sensitive`] show as `<redacted>`.
impl fmt::Debug for MetadataMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Redacted;
        impl fmt::Debug for Redacted {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("<redacted>")
            }
        }
        let mut map = f.debug_map();
        for (k, v) in self.visible() {
            let key = k.as_str();
            if v.is_sensitive() || is_sensitive_key(key) {
                map.entry(&key, &Redacted);
            } else if is_binary_key(key) {
                match base64_decode(v.as_bytes()) {
                    Ok(b) => map.entry(&key, &MetadataValue::Binary(Bytes::from(b))),
                    Err(_) => map.entry(&key, &"<invalid base64>"),
                };
            } else {
                match v.to_str() {
                    Ok(s) => map.entry(&key, &s),
                    Err(_) => map.entry(&key, &"<not ASCII>"),
                };
            }
        }
        map.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_credentials_sent_or_received() {
        let mut m = MetadataMap::new();
        m.insert("authorization", "Bearer s3cret").expect("valid");
        m.insert("x-api-key", "k3y").expect("valid");
        m.insert("x-visible", "hello").expect("valid");
        m.set_sensitive("x-api-key");
        let shown = format!("{m:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("k3y"),
            "{shown}"
        );
        assert!(
            shown.contains("hello") && shown.contains("<redacted>"),
            "{shown}"
        );
        // Sent as never-indexed literals.
        let headers = m.into_headers();
        assert!(headers["authorization"].is_sensitive());
        assert!(headers["x-api-key"].is_sensitive());
        assert!(!headers["x-visible"].is_sensitive());

        let mut received = HeaderMap::new();
        for (k, v) in [("cookie", "id=1"), ("proxy-authorization", "Basic eA==")] {
            received.insert(k, HeaderValue::from_static(v));
        }
        let shown = format!("{:?}", MetadataMap::from_headers(received));
        assert!(
            !shown.contains("id=1") && !shown.contains("eA=="),
            "{shown}"
        );
    }

    #[test]
    fn keys_are_validated() {
        let mut m = MetadataMap::new();
        assert!(m.insert("x-ok_1.2", "v").is_ok());
        assert!(m.insert("X-Upper", "v").is_err());
        assert!(m.insert("sp ace", "v").is_err());
        assert!(m.insert("", "v").is_err());
        assert!(m.insert("grpc-status", "0").is_err());
        assert!(m.insert("content-type", "x").is_err());
        assert!(m.insert("connection", "close").is_err());
        assert!(m.insert("x-bin", "text").is_err());
        assert!(m.insert_bin("x-text", b"\0").is_err());
        assert!(m.insert("x-val", "tab\there").is_err());
        assert!(m.insert("x-val", "caf\u{e9}").is_err());
    }

    #[test]
    fn binary_values_are_unpadded_and_decode_either_way() {
        let mut m = MetadataMap::new();
        m.insert_bin("x-data-bin", &[0xab, 0xab, 0xab, 0xab])
            .expect("valid");
        let raw = m.headers.get("x-data-bin").expect("present");
        assert_eq!(raw.as_bytes(), b"q6urqw");
        assert_eq!(
            m.get_bin("x-data-bin").and_then(Result::ok).as_deref(),
            Some(&[0xab, 0xab, 0xab, 0xab][..])
        );
        assert_eq!(base64_decode(b"q6urqw==").ok(), Some(vec![0xab; 4]));
        assert!(base64_decode(b"!!!").is_err());
    }

    #[test]
    fn multiple_values_and_reserved_headers_on_receive() {
        let mut h = HeaderMap::new();
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        h.insert("content-type", HeaderValue::from_static("application/grpc"));
        h.insert("grpc-timeout", HeaderValue::from_static("1S"));
        h.insert("grpc-custom", HeaderValue::from_static("kept"));
        let mut m = MetadataMap::from_headers(h);
        assert_eq!(m.get_all("x-a").collect::<Vec<_>>(), vec!["1", "2"]);
        assert!(!m.contains_key("content-type"));
        assert!(!m.contains_key("grpc-timeout"));
        assert_eq!(m.get("content-type"), None);
        assert_eq!(m.get_all("grpc-timeout").count(), 0);
        assert_eq!(m.get("grpc-custom"), Some("kept"));
        assert_eq!(m.len(), 3);
        assert_eq!(m.keys().collect::<Vec<_>>(), vec!["x-a", "grpc-custom"]);
        assert_eq!(m.iter().count(), 3);
        assert!(!m.remove("grpc-timeout"));
        assert!(format!("{m:?}").contains("grpc-custom"));
        assert!(!format!("{m:?}").contains("content-type"));
        // Sent on (e.g. echoed back), the map carries its metadata only.
        let mut sent = MetadataMap::new();
        sent.merge(m.clone());
        let headers = m.into_headers();
        assert_eq!(headers.len(), 3);
        assert!(!headers.contains_key("content-type"));
        assert!(!headers.contains_key("grpc-timeout"));
        assert_eq!(sent.into_headers().len(), 3);
    }
}
