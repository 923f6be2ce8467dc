//! Command-line flags in the official interop binaries' style: `--name=value`, `--name value`,
//! and a bare `--name` for `true`.

use std::collections::HashMap;

/// Parsed `--name=value` flags.
#[derive(Debug, Default)]
pub struct Flags {
    values: HashMap<String, String>,
}

impl Flags {
    /// Parses `args` (without the program name). Unknown flags are kept (and ignored by the
    /// binaries), so harnesses may pass flags of other implementations.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Flags, String> {
        let mut values = HashMap::new();
        let mut args = args.into_iter().peekable();
        while let Some(arg) = args.next() {
            let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                return Err(format!("unexpected argument {arg:?}"));
            };
            match flag.split_once('=') {
                Some((name, value)) => {
                    values.insert(name.to_owned(), value.to_owned());
                }
                None => {
                    let value = match args.peek() {
                        Some(next) if !next.starts_with('-') => args.next().unwrap_or_default(),
                        _ => "true".to_owned(),
                    };
                    values.insert(flag.to_owned(), value);
                }
            }
        }
        Ok(Flags { values })
    }

    /// A string flag.
    pub fn string(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// A boolean flag (`true`/`false`/`1`/`0`), `default` when absent.
    pub fn bool(&self, name: &str, default: bool) -> Result<bool, String> {
        match self.string(name) {
            None => Ok(default),
            Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(other) => Err(format!("--{name}: expected true or false, got {other:?}")),
        }
    }

    /// An integer flag, `default` when absent.
    pub fn int<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.string(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name}: expected a number, got {v:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling() {
        let args = [
            "--port=8080",
            "--use_tls",
            "--server_host",
            "localhost",
            "--x=false",
        ];
        let f = Flags::parse(args.iter().map(|s| s.to_string())).unwrap();
        assert_eq!(f.int("port", 0u16), Ok(8080));
        assert_eq!(f.bool("use_tls", false), Ok(true));
        assert_eq!(f.string("server_host"), Some("localhost"));
        assert_eq!(f.bool("x", true), Ok(false));
        assert_eq!(f.bool("absent", true), Ok(true));
        assert!(f.int::<u16>("server_host", 0).is_err());
        assert!(Flags::parse(["stray".to_string()]).is_err());
    }
}
