//! Target strings, as gRPC's `doc/naming.md` defines them.

use std::fmt;

use crate::Error;

/// The port of a `dns`, `ipv4` or `ipv6` target that names none (gRPC's default).
pub const DEFAULT_PORT: u16 = 443;

/// A parsed target: `scheme://authority/endpoint` (`doc/naming.md`), for example
/// `dns:///example.com:50051`, `dns://8.8.8.8/example.com`, `ipv4:10.0.0.1:50051,10.0.0.2:50051`,
/// `unix:/run/app.sock`, `unix-abstract:name`, `passthrough:///host:port`, or a bare
/// `host:port` (DNS). `http://host:port` is accepted too and means DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    scheme: String,
    authority: String,
    endpoint: String,
    /// Written `https://...`: TLS with the system's roots unless the channel sets its own.
    pub(crate) https: bool,
}

impl Target {
    /// Parses `target`. `is_registered` tells whether a resolver exists for a scheme: a
    /// `word:rest` target whose `word` is not a known scheme is a DNS `host:port`, as in grpc-go.
    pub(crate) fn parse(
        target: &str,
        is_registered: impl Fn(&str) -> bool,
    ) -> Result<Target, Error> {
        let invalid = |why: &str| Error::new(format!("invalid target {target:?}: {why}"));
        if target.is_empty() {
            return Err(invalid("empty"));
        }
        for (prefix, port) in [("http://", 80u16), ("https://", 443u16)] {
            if let Some(rest) = target.strip_prefix(prefix) {
                let host = rest.strip_suffix('/').unwrap_or(rest);
                if host.is_empty() {
                    return Err(invalid("no host"));
                }
                if host.contains('/') {
                    return Err(invalid("a target has no path"));
                }
                let endpoint = if split_host_port(host).map_err(|e| invalid(&e))?.1.is_some() {
                    host.to_owned()
                } else {
                    format!("{host}:{port}")
                };
                let mut parsed = Target::dns("", endpoint, target)?;
                parsed.https = prefix == "https://";
                return Ok(parsed);
            }
        }
        let scheme_end = target.find(':');
        let scheme = scheme_end.map(|i| &target[..i]).filter(|s| is_scheme(s));
        let Some(scheme) = scheme else {
            return Target::dns("", target.to_owned(), target);
        };
        let rest = &target[scheme.len() + 1..];
        let scheme_lower = scheme.to_ascii_lowercase();
        if !is_registered(&scheme_lower) {
            if rest.starts_with("//") {
                return Err(invalid(&format!(
                    "unknown scheme {scheme:?} (no resolver is registered for it)"
                )));
            }
            // `localhost:50051`: a host and port, not a scheme.
            return Target::dns("", target.to_owned(), target);
        }
        let (authority, endpoint) = match rest.strip_prefix("//") {
            Some(after) => match after.find('/') {
                Some(i) => (&after[..i], &after[i + 1..]),
                None => (after, ""),
            },
            None => ("", rest),
        };
        let parsed = Target {
            scheme: scheme_lower,
            authority: authority.to_owned(),
            endpoint: endpoint.to_owned(),
            https: false,
        };
        match parsed.scheme.as_str() {
            "dns" => Target::dns(authority, endpoint.to_owned(), target),
            "unix" => {
                // `unix:relative/or/absolute`, or `unix:///absolute` (an empty authority).
                let path = if rest.starts_with("//") {
                    if !authority.is_empty() {
                        return Err(invalid("a unix target has no authority; use unix:///path"));
                    }
                    format!("/{endpoint}")
                } else {
                    rest.to_owned()
                };
                if path.is_empty() || path == "/" {
                    return Err(invalid("no socket path"));
                }
                Ok(Target {
                    endpoint: path,
                    authority: String::new(),
                    ..parsed
                })
            }
            "unix-abstract" => Ok(Target {
                endpoint: rest.to_owned(),
                authority: String::new(),
                ..parsed
            }),
            "ipv4" | "ipv6" => {
                if rest.starts_with("//") {
                    return Err(invalid(
                        "an ipv4/ipv6 target lists addresses after the colon",
                    ));
                }
                let t = Target {
                    endpoint: rest.to_owned(),
                    authority: String::new(),
                    ..parsed
                };
                t.ip_addresses().map_err(|e| invalid(&e))?;
                Ok(t)
            }
            "passthrough" => {
                if endpoint.is_empty() {
                    return Err(invalid("no address"));
                }
                Ok(parsed)
            }
            _ => Ok(parsed),
        }
    }

    fn dns(authority: &str, endpoint: String, original: &str) -> Result<Target, Error> {
        let (host, _) = split_host_port(&endpoint)
            .map_err(|e| Error::new(format!("invalid target {original:?}: {e}")))?;
        if host.is_empty() {
            return Err(Error::new(format!("invalid target {original:?}: no host")));
        }
        Ok(Target {
            scheme: "dns".to_owned(),
            authority: authority.to_owned(),
            endpoint,
            https: false,
        })
    }

    /// The scheme, lower case: which resolver handles the target.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The authority part (`dns://8.8.8.8/...` gives `8.8.8.8`); usually empty.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// What the resolver resolves: `host:port`, a socket path, a list of addresses...
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The host part of [`Target::http_authority`] (the default TLS server name).
    pub(crate) fn host(&self) -> String {
        let authority = self.http_authority();
        match split_host_port(&authority) {
            Ok((host, _)) => host.to_owned(),
            Err(_) => authority,
        }
    }

    /// The `:authority` calls on this target carry (the host and port for DNS and passthrough,
    /// the first address for `ipv4`/`ipv6`, `localhost` for unix sockets).
    pub(crate) fn http_authority(&self) -> String {
        match self.scheme.as_str() {
            "unix" | "unix-abstract" => "localhost".to_owned(),
            "ipv4" | "ipv6" => self
                .endpoint
                .split(',')
                .next()
                .unwrap_or_default()
                .to_owned(),
            _ => self.endpoint.clone(),
        }
    }

    /// The socket addresses of an `ipv4:` or `ipv6:` target, default port 443.
    pub(crate) fn ip_addresses(&self) -> Result<Vec<std::net::SocketAddr>, String> {
        let v6 = self.scheme == "ipv6";
        self.endpoint
            .split(',')
            .map(|item| {
                let item = item.trim();
                if item.is_empty() {
                    return Err("empty address in the list".to_owned());
                }
                if v6 && !item.starts_with('[') {
                    // `ipv6:::1`: an address without brackets has no port.
                    let ip: std::net::Ipv6Addr = item
                        .parse()
                        .map_err(|_| format!("{item:?} is not an IPv6 address"))?;
                    return Ok(std::net::SocketAddr::from((ip, DEFAULT_PORT)));
                }
                let (host, port) = split_host_port(item)?;
                let port = port.unwrap_or(DEFAULT_PORT);
                let ip: std::net::IpAddr = host
                    .parse()
                    .map_err(|_| format!("{host:?} is not an IP address"))?;
                if ip.is_ipv6() != v6 {
                    return Err(format!(
                        "{host:?} is not an {} address",
                        if v6 { "IPv6" } else { "IPv4" }
                    ));
                }
                Ok(std::net::SocketAddr::from((ip, port)))
            })
            .collect()
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}/{}", self.scheme, self.authority, self.endpoint)
    }
}

/// A URI scheme: a letter, then letters, digits, `+`, `-` or `.`.
fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Splits `host:port`, `[v6]:port`, `host` or `[v6]` into the host (brackets removed) and
/// the port.
pub(crate) fn split_host_port(s: &str) -> Result<(&str, Option<u16>), String> {
    let parse_port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("invalid port {p:?} in {s:?}"))
    };
    if let Some(rest) = s.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return Err(format!("missing ']' in {s:?}"));
        };
        let host = &rest[..end];
        return match &rest[end + 1..] {
            "" => Ok((host, None)),
            tail => match tail.strip_prefix(':') {
                Some(p) => Ok((host, Some(parse_port(p)?))),
                None => Err(format!("unexpected {tail:?} after the address in {s:?}")),
            },
        };
    }
    match s.rfind(':') {
        Some(i) if s[..i].contains(':') => Err(format!(
            "{s:?}: an IPv6 address with a port needs brackets, [addr]:port"
        )),
        Some(i) => Ok((&s[..i], Some(parse_port(&s[i + 1..])?))),
        None => Ok((s, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(s: &str) -> bool {
        matches!(
            s,
            "dns" | "ipv4" | "ipv6" | "unix" | "unix-abstract" | "passthrough" | "etcd"
        )
    }

    fn parse(t: &str) -> Result<(String, String, String), String> {
        Target::parse(t, known)
            .map(|t| (t.scheme, t.authority, t.endpoint))
            .map_err(|e| e.to_string())
    }

    fn ok(t: &str, scheme: &str, authority: &str, endpoint: &str) {
        assert_eq!(
            parse(t),
            Ok((scheme.into(), authority.into(), endpoint.into())),
            "{t}"
        );
    }

    #[test]
    fn parses_every_form_of_doc_naming() {
        ok("dns:///example.com:50051", "dns", "", "example.com:50051");
        ok("dns:///example.com", "dns", "", "example.com");
        ok(
            "dns://8.8.8.8/example.com:50051",
            "dns",
            "8.8.8.8",
            "example.com:50051",
        );
        ok("dns:example.com:1", "dns", "", "example.com:1");
        ok("DNS:///a:1", "dns", "", "a:1");
        ok("dns:///[::1]:50051", "dns", "", "[::1]:50051");
        ok("example.com:50051", "dns", "", "example.com:50051");
        ok("localhost:50051", "dns", "", "localhost:50051");
        ok("127.0.0.1:9", "dns", "", "127.0.0.1:9");
        ok("example.com", "dns", "", "example.com");
        ok("[::1]:50051", "dns", "", "[::1]:50051");
        ok("http://127.0.0.1:50051", "dns", "", "127.0.0.1:50051");
        ok("http://example.com", "dns", "", "example.com:80");
        ok("http://example.com/", "dns", "", "example.com:80");
        ok("https://example.com", "dns", "", "example.com:443");
        ok("https://example.com:8443", "dns", "", "example.com:8443");
        ok(
            "ipv4:1.2.3.4:50051,5.6.7.8:50051",
            "ipv4",
            "",
            "1.2.3.4:50051,5.6.7.8:50051",
        );
        ok("ipv4:1.2.3.4", "ipv4", "", "1.2.3.4");
        ok("ipv6:[::1]:50051", "ipv6", "", "[::1]:50051");
        ok("ipv6:[::1]:1,::2", "ipv6", "", "[::1]:1,::2");
        ok("unix:/tmp/a.sock", "unix", "", "/tmp/a.sock");
        ok("unix:relative.sock", "unix", "", "relative.sock");
        ok("unix:///tmp/a.sock", "unix", "", "/tmp/a.sock");
        ok("unix-abstract:my-name", "unix-abstract", "", "my-name");
        ok("unix-abstract:", "unix-abstract", "", "");
        ok(
            "passthrough:///localhost:1",
            "passthrough",
            "",
            "localhost:1",
        );
        ok("etcd:///kvdb", "etcd", "", "kvdb");
    }

    #[test]
    fn rejects_what_is_not_a_target() {
        for bad in [
            "",
            "foo:///bar",
            "nosuchscheme://x/y",
            "http://",
            "http://a:1/path",
            "host:notaport",
            "host:99999",
            "::1:50051",
            "ipv4:",
            "ipv4:1.2.3.4:x",
            "ipv4:::1",
            "ipv4:1.2.3.4,,5.6.7.8",
            "ipv6:1.2.3.4",
            "ipv6:[::1",
            "unix:",
            "unix:///",
            "unix://host/path",
            "passthrough:///",
            "dns:///",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed as {:?}", parse(bad));
        }
        let e = parse("foo:///bar").unwrap_err();
        assert!(e.contains("unknown scheme"), "{e}");
    }

    #[test]
    fn ip_lists_and_default_port() {
        let t = Target::parse("ipv4:1.2.3.4:5,6.7.8.9", known).unwrap();
        assert_eq!(
            t.ip_addresses().unwrap(),
            vec!["1.2.3.4:5".parse().unwrap(), "6.7.8.9:443".parse().unwrap()]
        );
        let t = Target::parse("ipv6:[::1]:7,::2", known).unwrap();
        assert_eq!(
            t.ip_addresses().unwrap(),
            vec!["[::1]:7".parse().unwrap(), "[::2]:443".parse().unwrap()]
        );
        assert_eq!(t.http_authority(), "[::1]:7");
        let t = Target::parse("unix:/a", known).unwrap();
        assert_eq!(t.http_authority(), "localhost");
    }
}
