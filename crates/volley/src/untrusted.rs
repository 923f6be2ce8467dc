//! Values a peer sent, made safe to echo into a `grpc-message` or a log line: bounded in
//! length and with control characters escaped, so that a request cannot make the answer (or
//! the log) larger than itself, or forge log lines.

use std::fmt;

/// How many bytes of an untrusted value are shown, at most.
pub(crate) const SHOWN: usize = 128;

/// An untrusted value, displayed quoted: printable ASCII as it is (`"` and `\` escaped),
/// anything else as `\xNN`, cut after [`SHOWN`] output bytes with the full length noted.
pub(crate) struct Quoted<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::with_capacity(SHOWN + 2);
        out.push('"');
        let mut shown = 0;
        for &b in self.0 {
            let piece_len = match b {
                b'"' | b'\\' => 2,
                0x20..=0x7e => 1,
                _ => 4,
            };
            if out.len() + piece_len > SHOWN + 1 {
                break;
            }
            match b {
                b'"' | b'\\' => {
                    out.push('\\');
                    out.push(b as char);
                }
                0x20..=0x7e => out.push(b as char),
                _ => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.push_str("\\x");
                    out.push(HEX[usize::from(b >> 4)] as char);
                    out.push(HEX[usize::from(b & 0xf)] as char);
                }
            }
            shown += 1;
        }
        out.push('"');
        f.write_str(&out)?;
        if shown < self.0.len() {
            write!(f, "... ({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_printable_values_are_quoted_as_they_are() {
        assert_eq!(Quoted(b"1000X").to_string(), r#""1000X""#);
        assert_eq!(Quoted(br#"a"b\c"#).to_string(), r#""a\"b\\c""#);
        assert_eq!(Quoted(b"").to_string(), r#""""#);
    }

    #[test]
    fn control_characters_and_non_ascii_are_escaped() {
        assert_eq!(
            Quoted(b"a\r\nb\x00\xff").to_string(),
            r#""a\x0d\x0ab\x00\xff""#
        );
        assert_eq!(Quoted("é".as_bytes()).to_string(), r#""\xc3\xa9""#);
    }

    #[test]
    fn long_values_are_cut_whatever_they_hold() {
        for byte in [b'a', b'"', 0xff, b'\n'] {
            let value = vec![byte; 1_000_000];
            let shown = Quoted(&value).to_string();
            assert!(shown.len() <= SHOWN + 2 + 20, "{} bytes", shown.len());
            assert!(shown.ends_with("... (1000000 bytes)"), "{shown}");
        }
        let exact = vec![b'a'; SHOWN - 1];
        assert!(!Quoted(&exact).to_string().contains("..."));
    }
}
