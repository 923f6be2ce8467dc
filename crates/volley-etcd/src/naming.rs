//! The key/value format of etcd's Go `client/v3/naming/endpoints` package, so that Go and
//! Rust services find each other.
//!
//! A service `name` has one key per endpoint under the prefix `name/` (the registrar uses
//! `name/addr`); the value is the JSON of Go's `internal.Update` struct, with Go's field names
//! and order: `{"Op":0,"Addr":"10.0.0.1:50051","Metadata":null}`. Readers, like Go's
//! `encoding/json`, match field names case-insensitively and take the address from the value,
//! not from the key.

use serde_json::Value;

/// One endpoint of a service, as stored in etcd.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// The address clients connect to (`host:port`).
    pub addr: String,
    /// What the registrant attached (`null` when nothing).
    pub metadata: Value,
}

/// The value the Go package writes for an added endpoint, byte for byte: Go's field order,
/// compact, with Go's HTML-safe escaping of `<`, `>` and `&` (and U+2028/U+2029) in strings.
pub fn encode(endpoint: &Endpoint) -> String {
    let addr = Value::String(endpoint.addr.clone()).to_string();
    // serde_json sorts object keys, as Go does for maps.
    let metadata = endpoint.metadata.to_string();
    go_escape(&format!(
        r#"{{"Op":0,"Addr":{addr},"Metadata":{metadata}}}"#
    ))
}

/// Go's `encoding/json` escapes these even inside strings; they appear nowhere else in JSON.
fn go_escape(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// Reads a value written by any version of the Go package (or by hand): a JSON object whose
/// `Addr` (any case) is a non-empty string. `Op` is not consulted, as in Go's resolver: a
/// key that exists is an endpoint.
pub fn decode(value: &[u8]) -> Result<Endpoint, String> {
    let json: Value = serde_json::from_slice(value).map_err(|e| format!("not JSON ({e})"))?;
    let Value::Object(fields) = json else {
        return Err("not a JSON object".to_owned());
    };
    // Go prefers an exact match, then any case-insensitive one.
    let field = |name: &str| {
        fields
            .get(name)
            .or_else(|| {
                fields
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v)
            })
            .cloned()
    };
    let addr = match field("Addr") {
        Some(Value::String(addr)) if !addr.is_empty() => addr,
        Some(Value::String(_)) | None => return Err("no address (Addr)".to_owned()),
        Some(other) => return Err(format!("Addr is not a string: {other}")),
    };
    Ok(Endpoint {
        addr,
        metadata: field("Metadata").unwrap_or(Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_exactly_as_go() {
        let plain = Endpoint {
            addr: "127.0.0.1:50051".into(),
            metadata: Value::Null,
        };
        assert_eq!(
            encode(&plain),
            r#"{"Op":0,"Addr":"127.0.0.1:50051","Metadata":null}"#
        );
        let with_metadata = Endpoint {
            addr: "[::1]:8080".into(),
            metadata: serde_json::json!({"zone": "b", "weight": 3, "tags": ["<x>&"]}),
        };
        assert_eq!(
            encode(&with_metadata),
            r#"{"Op":0,"Addr":"[::1]:8080","Metadata":{"tags":["\u003cx\u003e\u0026"],"weight":3,"zone":"b"}}"#
        );
    }

    #[test]
    fn decodes_what_go_and_people_write() {
        let go = decode(br#"{"Op":0,"Addr":"10.0.0.1:1","Metadata":{"a":1}}"#).unwrap();
        assert_eq!(go.addr, "10.0.0.1:1");
        assert_eq!(go.metadata, serde_json::json!({"a": 1}));
        let lower = decode(br#"{"op":0,"addr":"10.0.0.2:2"}"#).unwrap();
        assert_eq!(lower.addr, "10.0.0.2:2");
        assert_eq!(lower.metadata, Value::Null);
        let roundtrip = Endpoint {
            addr: "a&b:1".into(),
            metadata: serde_json::json!("x"),
        };
        assert_eq!(decode(encode(&roundtrip).as_bytes()).unwrap(), roundtrip);
    }

    #[test]
    fn rejects_what_is_not_an_endpoint() {
        for bad in [
            &b"10.0.0.1:1"[..],
            b"{}",
            b"[1]",
            br#"{"Addr":""}"#,
            br#"{"Addr":7}"#,
            b"\xff",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    /// Values from etcd are written by anyone with access to the prefix: random and mutated
    /// ones never panic the reader, and what reads as an endpoint writes and reads back as
    /// itself (`VOLLEY_FUZZ_ITERATIONS` inputs; `tests/fuzz-input/README.md`).
    #[test]
    fn fuzz_endpoint_values() {
        let corpus: &[&[u8]] = &[
            br#"{"Op":0,"Addr":"10.0.0.1:50051","Metadata":null}"#,
            br#"{"addr":"[::1]:50051","metadata":{"zone":"a","w":[1,2.5,true]}}"#,
            br#"{"Addr":"h:1","Metadata":"<&>\u2028"}"#,
            br#"{"Op":1,"Addr":""}"#,
            b"not json",
        ];
        for input in volley_fuzz_input::Inputs::new(corpus, 8) {
            if let Ok(endpoint) = decode(&input) {
                assert_eq!(decode(encode(&endpoint).as_bytes()), Ok(endpoint));
            }
        }
    }
}
