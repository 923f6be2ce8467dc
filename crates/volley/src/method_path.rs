//! gRPC method paths, `/package.Service/Method`: the one place that splits them.

/// The path without its leading `/`: `package.Service/Method` (OpenTelemetry's span name).
pub(crate) fn name(path: &str) -> &str {
    path.strip_prefix('/').unwrap_or(path)
}

/// `package.Service/Method` split at its last `/` into service and method; `None` without
/// one. By bytes (`/` is ASCII, so both halves are valid UTF-8): a plain scan the call path
/// inlines, where `rsplit_once` became an out-of-line `memrchr` call.
pub(crate) fn split_name(name: &str) -> Option<(&str, &str)> {
    let at = name.bytes().rposition(|b| b == b'/')?;
    Some((&name[..at], &name[at + 1..]))
}

/// The service of a path (all of it, for a path without a method).
pub(crate) fn service(path: &str) -> &str {
    let name = name(path);
    split_name(name).map_or(name, |(service, _)| service)
}

/// The method of a path (empty, for a path without one).
pub(crate) fn method(path: &str) -> &str {
    split_name(name(path)).map_or("", |(_, method)| method)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(split_name("a.b.Svc/Do"), Some(("a.b.Svc", "Do")));
        assert_eq!(split_name("no-slash"), None);
        assert_eq!(
            (service("/a.b.Svc/Do"), method("/a.b.Svc/Do")),
            ("a.b.Svc", "Do")
        );
        assert_eq!((service("/Svc/"), method("/Svc/")), ("Svc", ""));
        assert_eq!((service("odd"), method("odd")), ("odd", ""));
        assert_eq!(name("/a.S/M"), "a.S/M");
    }
}
