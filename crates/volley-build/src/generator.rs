//! Writes the Rust for one service: the trait, `FooServer` and `FooClient`.

use std::fmt::Write as _;

use prost_build::{Method, Service, ServiceGenerator};

pub(crate) struct Generator {
    pub(crate) build_server: bool,
    pub(crate) build_client: bool,
}

impl ServiceGenerator for Generator {
    fn generate(&mut self, service: Service, buf: &mut String) {
        if self.build_server {
            write_trait(&service, buf);
            write_server(&service, buf);
        }
        if self.build_client {
            write_client(&service, buf);
        }
    }
}

fn full_name(service: &Service) -> String {
    if service.package.is_empty() {
        service.proto_name.clone()
    } else {
        format!("{}.{}", service.package, service.proto_name)
    }
}

fn stream_type_name(method: &Method) -> String {
    format!("{}Stream", method.proto_name)
}

fn result_of(t: &str) -> String {
    format!("::core::result::Result<{t}, ::volley::Status>")
}

fn write_trait(service: &Service, buf: &mut String) {
    let name = &service.name;
    service.comments.append_with_indent(0, buf);
    if service.comments.leading.is_empty() {
        let _ = writeln!(
            buf,
            "/// The `{}` service, to implement on the server.",
            full_name(service)
        );
    }
    let _ = writeln!(
        buf,
        "pub trait {name}: ::core::marker::Send + ::core::marker::Sync + 'static {{"
    );
    for m in &service.methods {
        let input = if m.client_streaming {
            format!("::volley::Streaming<{}>", m.input_type)
        } else {
            m.input_type.clone()
        };
        let output = if m.server_streaming {
            let stream = stream_type_name(m);
            let _ = writeln!(
                buf,
                "    /// The stream of responses of [`{name}::{}`].",
                m.name.trim_start_matches("r#")
            );
            let _ = writeln!(
                buf,
                "    type {stream}: ::volley::codegen::Stream<Item = {}> + ::core::marker::Send + 'static;",
                result_of(&m.output_type)
            );
            format!("Self::{stream}")
        } else {
            m.output_type.clone()
        };
        m.comments.append_with_indent(1, buf);
        if m.comments.leading.is_empty() {
            let _ = writeln!(buf, "    /// The `{}` method.", m.proto_name);
        }
        let _ = writeln!(
            buf,
            "    fn {}(&self, request: ::volley::Request<{input}>) -> impl ::core::future::Future<Output = {}> + ::core::marker::Send;",
            m.name,
            result_of(&format!("::volley::Response<{output}>"))
        );
    }
    let _ = writeln!(buf, "}}\n");
}

fn write_server(service: &Service, buf: &mut String) {
    let name = &service.name;
    let server = format!("{name}Server");
    let full = full_name(service);
    let _ = write!(
        buf,
        r#"/// Serves a [`{name}`] implementation: pass it to `volley::Server::builder().add_service(..)`.
pub struct {server}<T> {{
    inner: ::std::sync::Arc<T>,
}}

impl<T> ::core::clone::Clone for {server}<T> {{
    fn clone(&self) -> Self {{
        {server} {{ inner: self.inner.clone() }}
    }}
}}

impl<T> ::core::fmt::Debug for {server}<T> {{
    fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {{
        f.write_str("{server}")
    }}
}}

impl<T: {name}> {server}<T> {{
    /// Serves `inner`.
    pub fn new(inner: T) -> Self {{
        {server} {{ inner: ::std::sync::Arc::new(inner) }}
    }}

    /// Serves an implementation that the program shares elsewhere too.
    pub fn from_arc(inner: ::std::sync::Arc<T>) -> Self {{
        {server} {{ inner }}
    }}
}}

impl<T: {name}> ::volley::codegen::Service for {server}<T> {{
    fn name(&self) -> &'static str {{
        "{full}"
    }}

    fn call(
        &self,
        method: &str,
        call: ::volley::codegen::ServerCall,
    ) -> ::core::option::Option<::volley::codegen::BoxFuture<()>> {{
        match method {{
"#
    );
    for m in &service.methods {
        let helper = match (m.client_streaming, m.server_streaming) {
            (false, false) => "unary",
            (false, true) => "server_streaming",
            (true, false) => "client_streaming",
            (true, true) => "streaming",
        };
        let _ = writeln!(
            buf,
            r#"            "{proto}" => {{
                let inner = self.inner.clone();
                ::core::option::Option::Some(::std::boxed::Box::pin(call.{helper}(
                    move |request| async move {{ inner.{rust}(request).await }},
                )))
            }}"#,
            proto = m.proto_name,
            rust = m.name,
        );
    }
    let _ = writeln!(
        buf,
        "            _ => {{\n                call.unknown_method(\"{full}\", method);\n                ::core::option::Option::None\n            }}\n        }}\n    }}\n}}\n"
    );
}

/// The generated client's own associated functions; an RPC of the same name gets `_rpc`
/// appended in the client (the service trait keeps the plain name).
const CLIENT_OWN_METHODS: &[&str] = &[
    "new",
    "connect",
    "send_compressed",
    "max_decoding_message_size",
    "max_encoding_message_size",
];

fn client_method_name(m: &Method) -> String {
    if CLIENT_OWN_METHODS.contains(&m.name.as_str()) {
        format!("{}_rpc", m.name)
    } else {
        m.name.clone()
    }
}

fn write_client(service: &Service, buf: &mut String) {
    let name = &service.name;
    let client = format!("{name}Client");
    let full = full_name(service);
    let _ = write!(
        buf,
        r#"/// A typed client of the `{full}` service. Cheap to clone; clones share the channel.
#[derive(Debug, Clone)]
pub struct {client} {{
    inner: ::volley::Grpc,
}}

impl {client} {{
    /// A client calling over `channel`.
    pub fn new(channel: ::volley::Channel) -> Self {{
        {client} {{ inner: ::volley::Grpc::new(channel) }}
    }}

    /// A client over a new channel to `target` (`http://host:port`), connected at once.
    pub async fn connect(target: &str) -> ::core::result::Result<Self, ::volley::Error> {{
        ::core::result::Result::Ok(Self::new(::volley::Channel::builder(target).connect().await?))
    }}

    /// Compresses request messages with `encoding`. Default: not compressed.
    #[must_use]
    pub fn send_compressed(mut self, encoding: ::volley::CompressionEncoding) -> Self {{
        self.inner.send_compressed(encoding);
        self
    }}

    /// The largest response message accepted. Default: 4 MiB.
    #[must_use]
    pub fn max_decoding_message_size(mut self, bytes: usize) -> Self {{
        self.inner.max_decoding_message_size(bytes);
        self
    }}

    /// The largest request message sent. Default: no limit.
    #[must_use]
    pub fn max_encoding_message_size(mut self, bytes: usize) -> Self {{
        self.inner.max_encoding_message_size(bytes);
        self
    }}
"#
    );
    for m in &service.methods {
        let path = format!("/{full}/{}", m.proto_name);
        let (param, convert) = if m.client_streaming {
            (
                format!(
                    "impl ::volley::IntoStreamingRequest<Message = {}>",
                    m.input_type
                ),
                "::volley::IntoStreamingRequest::into_streaming_request(request)",
            )
        } else {
            (
                format!("impl ::volley::IntoRequest<{}>", m.input_type),
                "::volley::IntoRequest::into_request(request)",
            )
        };
        let output = if m.server_streaming {
            format!("::volley::Streaming<{}>", m.output_type)
        } else {
            m.output_type.clone()
        };
        let helper = match (m.client_streaming, m.server_streaming) {
            (false, false) => "unary",
            (false, true) => "server_streaming",
            (true, false) => "client_streaming",
            (true, true) => "streaming",
        };
        buf.push('\n');
        m.comments.append_with_indent(1, buf);
        if m.comments.leading.is_empty() {
            let _ = writeln!(buf, "    /// Calls `{}`.", m.proto_name);
        }
        if m.client_streaming && m.server_streaming {
            let _ = writeln!(
                buf,
                "    ///\n    /// Returns once the call is open, before the server's response headers \
                 (`Streaming::headers` waits for them; the `Response`'s metadata is empty)."
            );
        }
        let rust = client_method_name(m);
        if rust != m.name {
            let _ = writeln!(
                buf,
                "    ///\n    /// (Named `{rust}` because `{}` is one of the client's own methods.)",
                m.name
            );
        }
        let _ = writeln!(
            buf,
            r#"    pub async fn {rust}(&self, request: {param}) -> {ret} {{
        self.inner.{helper}({convert}, "{path}").await
    }}"#,
            ret = result_of(&format!("::volley::Response<{output}>")),
        );
    }
    let _ = writeln!(buf, "}}\n");
}
