//! What both sides of a connection share: the connection error, and the rules for header
//! fields (RFC 9113 §8.2).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::hpack::Field;

/// Streams by id. Ids are peer-chosen but only ever increase, and the open ones are bounded
/// by SETTINGS_MAX_CONCURRENT_STREAMS, so a multiplicative hash (no SipHash per lookup) is
/// enough.
pub type StreamMap<V> = HashMap<u32, V, BuildHasherDefault<StreamIdHasher>>;

/// Fibonacci hashing of a stream id: spreads consecutive odd ids over the table.
#[derive(Debug, Default, Clone, Copy)]
pub struct StreamIdHasher(u64);

impl Hasher for StreamIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, id: u32) {
        self.0 = u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A connection error: GOAWAY is in the output; flush it and close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionError {
    /// The error code sent.
    pub code: u32,
    /// Why (also GOAWAY's debug data).
    pub reason: &'static str,
}

impl std::fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HTTP/2 connection error {:#x}: {}",
            self.code, self.reason
        )
    }
}

impl std::error::Error for ConnectionError {}

pub(crate) fn fail(code: u32, reason: &'static str) -> ConnectionError {
    ConnectionError { code, reason }
}

/// Field names are lower-case tokens (§8.2, §8.2.1); values have no NUL, CR or LF and no
/// leading or trailing whitespace.
pub(crate) fn valid_field(field: &Field) -> bool {
    let name = match field.name.strip_prefix(b":") {
        Some(rest) => rest,
        None => &field.name[..],
    };
    let value = &field.value[..];
    !name.is_empty()
        && name.iter().all(|&b| NAME_BYTES[b as usize])
        && value_bytes_ok(value)
        && !value.first().is_some_and(|b| matches!(b, b' ' | b'\t'))
        && !value.last().is_some_and(|b| matches!(b, b' ' | b'\t'))
}

/// Whether `value` holds no NUL, CR or LF: eight bytes at a time, looking byte by byte only
/// at a word that holds a byte below 0x0e (every request's values pass through here).
fn value_bytes_ok(value: &[u8]) -> bool {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    let bad = |b: &u8| matches!(*b, 0 | b'\r' | b'\n');
    let mut words = value.chunks_exact(8);
    for word in &mut words {
        if let Ok(bytes) = <[u8; 8]>::try_from(word) {
            let x = u64::from_le_bytes(bytes);
            // Some byte of x is below 0x0e (the classic "has less than n" test, n <= 128).
            if x.wrapping_sub(ONES * 0x0e) & !x & HIGHS == 0 {
                continue;
            }
        }
        if word.iter().any(bad) {
            return false;
        }
    }
    !words.remainder().iter().any(bad)
}

/// The bytes of a field name: lower-case token characters.
const NAME_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    table
};

/// Header fields that only mean something on one HTTP/1.1 hop (§8.2.2).
pub(crate) fn connection_specific(name: &[u8]) -> bool {
    matches!(
        name,
        b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding" | b"upgrade"
    )
}

/// Checks trailers: no pseudo-header fields (§8.1).
pub(crate) fn check_trailers(fields: &[Field]) -> Result<(), ()> {
    for field in fields {
        if !valid_field(field) || field.name.starts_with(b":") || connection_specific(&field.name) {
            return Err(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::value_bytes_ok;

    #[test]
    fn value_bytes_are_checked_at_every_position_and_every_byte() {
        for len in 0..20 {
            assert!(value_bytes_ok(&vec![b'a'; len]));
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut v = vec![b'a'; len];
                    v[at] = b;
                    let ok = !matches!(b, 0 | b'\r' | b'\n');
                    assert_eq!(value_bytes_ok(&v), ok, "byte {b:#x} at {at} of {len}");
                }
            }
        }
    }
}
