//! gRPC server reflection (`grpc.reflection.v1.ServerReflection` and its older name
//! `grpc.reflection.v1alpha.ServerReflection`, both served) for Volley servers, built from the
//! encoded `FileDescriptorSet`s that `volley-build` writes (`$OUT_DIR/file_descriptor_set.bin`).
//! Tools such as grpcurl and grpc_cli use it to list services and to find the schema of any
//! method without the `.proto` files.
//!
//! ```no_run
//! # fn fds() -> &'static [u8] { &[] }
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let reflection = volley_reflection::Builder::new()
//!     // include_bytes!(concat!(env!("OUT_DIR"), "/file_descriptor_set.bin")) in a real server
//!     .register_encoded_file_descriptor_set(fds())
//!     .register_encoded_file_descriptor_set(volley_health::FILE_DESCRIPTOR_SET)
//!     .build()?;
//! volley::Server::builder()
//!     .add_service(reflection.v1())
//!     .add_service(reflection.v1alpha())
//!     .serve("127.0.0.1:50051".parse()?)
//!     .await?;
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use prost::Message;
use prost_types::{DescriptorProto, FileDescriptorProto, FileDescriptorSet};
use volley::{Code, Request, Response, Status, Streaming};

/// The reflection protocol's messages and services, generated from the crate's own copies of
/// `grpc/reflection/v1/reflection.proto` and `.../v1alpha/reflection.proto` (whose messages
/// are the v1 types: the two are identical on the wire).
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod proto {
    /// `grpc.reflection.v1`.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/grpc.reflection.v1.rs"));
    }
    /// `grpc.reflection.v1alpha`: the service only; its messages are [`v1`]'s.
    pub mod v1alpha {
        include!(concat!(env!("OUT_DIR"), "/grpc.reflection.v1alpha.rs"));
    }
}

use proto::v1::server_reflection_request::MessageRequest;
use proto::v1::server_reflection_response::MessageResponse;
use proto::v1::{
    ErrorResponse, ExtensionNumberResponse, FileDescriptorResponse, ListServiceResponse,
    ServerReflectionRequest, ServerReflectionResponse, ServiceResponse,
};

/// The encoded `FileDescriptorSet` of the reflection protos themselves (both packages).
const OWN_V1: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/reflection_v1.bin"));
const OWN_V1ALPHA: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/reflection_v1alpha.bin"));

/// Collects the schemas a reflection service describes. Every service of every registered
/// file is listed; the reflection services themselves always are.
#[derive(Debug, Default)]
#[must_use]
pub struct Builder {
    sets: Vec<Vec<u8>>,
}

impl Builder {
    /// A builder with only the reflection services' own schema.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Adds the files of an encoded `FileDescriptorSet` (as `volley-build` writes it, with
    /// imports included, so that every dependency can be sent). A file registered twice is
    /// kept once. Default: none.
    pub fn register_encoded_file_descriptor_set(mut self, set: &[u8]) -> Builder {
        self.sets.push(set.to_vec());
        self
    }

    /// Builds the service. Fails when a set does not decode, or a file names a dependency
    /// that no registered set holds.
    pub fn build(self) -> Result<Reflection, volley::Error> {
        let mut index = Index::default();
        for set in [OWN_V1, OWN_V1ALPHA]
            .into_iter()
            .chain(self.sets.iter().map(Vec::as_slice))
        {
            let set = FileDescriptorSet::decode(set)
                .map_err(|e| volley::Error::new(format!("an invalid FileDescriptorSet: {e}")))?;
            for file in set.file {
                index.add(file);
            }
        }
        index.check_dependencies()?;
        Ok(Reflection {
            index: Arc::new(index),
        })
    }
}

/// A built reflection service: add [`Reflection::v1`] and [`Reflection::v1alpha`] to a server.
#[derive(Debug, Clone)]
pub struct Reflection {
    index: Arc<Index>,
}

impl Reflection {
    /// `grpc.reflection.v1.ServerReflection`.
    pub fn v1(&self) -> proto::v1::ServerReflectionServer<Service> {
        proto::v1::ServerReflectionServer::new(Service {
            index: self.index.clone(),
        })
    }

    /// `grpc.reflection.v1alpha.ServerReflection`, for clients that only know the old name.
    pub fn v1alpha(&self) -> proto::v1alpha::ServerReflectionServer<Service> {
        proto::v1alpha::ServerReflectionServer::new(Service {
            index: self.index.clone(),
        })
    }
}

/// Files by name, and where each symbol and extension is defined.
#[derive(Debug, Default)]
struct Index {
    /// Each file, encoded, with its dependencies' names.
    files: HashMap<String, (Vec<u8>, Vec<String>)>,
    /// Fully-qualified symbol (no leading dot) -> the file that defines it.
    symbols: HashMap<String, String>,
    /// Extended message (no leading dot) -> extension number -> file.
    extensions: HashMap<String, BTreeMap<i32, String>>,
    /// Every service, by fully-qualified name.
    services: BTreeSet<String>,
}

fn qualify(scope: &str, name: &str) -> String {
    if scope.is_empty() {
        name.to_owned()
    } else {
        format!("{scope}.{name}")
    }
}

impl Index {
    fn add(&mut self, file: FileDescriptorProto) {
        let name = file.name().to_owned();
        if self.files.contains_key(&name) {
            return;
        }
        let package = file.package().to_owned();
        for message in &file.message_type {
            self.add_message(&name, &package, message);
        }
        for e in &file.enum_type {
            self.symbols
                .insert(qualify(&package, e.name()), name.clone());
        }
        for ext in &file.extension {
            self.add_extension(&name, &package, ext);
        }
        for service in &file.service {
            let full = qualify(&package, service.name());
            for method in &service.method {
                self.symbols
                    .insert(qualify(&full, method.name()), name.clone());
            }
            self.symbols.insert(full.clone(), name.clone());
            self.services.insert(full);
        }
        let encoded = file.encode_to_vec();
        self.files.insert(name, (encoded, file.dependency));
    }

    fn add_message(&mut self, file: &str, scope: &str, message: &DescriptorProto) {
        let full = qualify(scope, message.name());
        for nested in &message.nested_type {
            self.add_message(file, &full, nested);
        }
        for e in &message.enum_type {
            self.symbols
                .insert(qualify(&full, e.name()), file.to_owned());
        }
        for ext in &message.extension {
            self.add_extension(file, &full, ext);
        }
        self.symbols.insert(full, file.to_owned());
    }

    fn add_extension(&mut self, file: &str, scope: &str, ext: &prost_types::FieldDescriptorProto) {
        self.symbols
            .insert(qualify(scope, ext.name()), file.to_owned());
        let extendee = ext.extendee().trim_start_matches('.').to_owned();
        self.extensions
            .entry(extendee)
            .or_default()
            .insert(ext.number(), file.to_owned());
    }

    fn check_dependencies(&self) -> Result<(), volley::Error> {
        for (name, (_, deps)) in &self.files {
            if let Some(missing) = deps.iter().find(|d| !self.files.contains_key(*d)) {
                return Err(volley::Error::new(format!(
                    "{name} imports {missing}, which no registered FileDescriptorSet holds"
                )));
            }
        }
        Ok(())
    }

    /// `name` and every file it depends on, directly or not, each once, `name` first.
    fn with_dependencies(&self, name: &str) -> Vec<Vec<u8>> {
        let mut seen = BTreeSet::new();
        let mut order = Vec::new();
        let mut stack = vec![name.to_owned()];
        while let Some(next) = stack.pop() {
            if !seen.insert(next.clone()) {
                continue;
            }
            if let Some((encoded, deps)) = self.files.get(&next) {
                order.push(encoded.clone());
                stack.extend(deps.iter().rev().cloned());
            }
        }
        order
    }

    /// The answer to one request.
    fn answer(&self, request: &MessageRequest) -> MessageResponse {
        let not_found = |what: String| {
            MessageResponse::ErrorResponse(ErrorResponse {
                error_code: Code::NotFound as i32,
                error_message: what,
            })
        };
        let files = |name: &str| {
            MessageResponse::FileDescriptorResponse(FileDescriptorResponse {
                file_descriptor_proto: self.with_dependencies(name),
            })
        };
        let shown = |s: &str| s.chars().take(128).collect::<String>();
        match request {
            MessageRequest::ListServices(_) => {
                MessageResponse::ListServicesResponse(ListServiceResponse {
                    service: self
                        .services
                        .iter()
                        .map(|name| ServiceResponse { name: name.clone() })
                        .collect(),
                })
            }
            MessageRequest::FileByFilename(name) => match self.files.contains_key(name) {
                true => files(name),
                false => not_found(format!("no file {:?}", shown(name))),
            },
            MessageRequest::FileContainingSymbol(symbol) => {
                let symbol = symbol.trim_start_matches('.');
                match self.symbols.get(symbol) {
                    Some(file) => files(file),
                    None => not_found(format!("no symbol {:?}", shown(symbol))),
                }
            }
            MessageRequest::FileContainingExtension(ext) => {
                let extendee = ext.containing_type.trim_start_matches('.');
                match self
                    .extensions
                    .get(extendee)
                    .and_then(|numbers| numbers.get(&ext.extension_number))
                {
                    Some(file) => files(file),
                    None => not_found(format!(
                        "no extension {} of {:?}",
                        ext.extension_number,
                        shown(extendee)
                    )),
                }
            }
            MessageRequest::AllExtensionNumbersOfType(type_name) => {
                let type_name = type_name.trim_start_matches('.');
                if !self.symbols.contains_key(type_name) {
                    return not_found(format!("no type {:?}", shown(type_name)));
                }
                MessageResponse::AllExtensionNumbersResponse(ExtensionNumberResponse {
                    base_type_name: type_name.to_owned(),
                    extension_number: self
                        .extensions
                        .get(type_name)
                        .map(|numbers| numbers.keys().copied().collect())
                        .unwrap_or_default(),
                })
            }
        }
    }
}

/// The reflection service of both packages; made by [`Reflection`].
#[derive(Debug)]
pub struct Service {
    index: Arc<Index>,
}

impl Service {
    async fn info(
        &self,
        request: Request<Streaming<ServerReflectionRequest>>,
    ) -> Result<Response<volley::BoxStream<ServerReflectionResponse>>, Status> {
        let mut requests = request.into_inner();
        let index = self.index.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let request = match requests.message().await {
                    Ok(Some(request)) => request,
                    Ok(None) => return,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                let answer = match &request.message_request {
                    Some(message) => index.answer(message),
                    None => MessageResponse::ErrorResponse(ErrorResponse {
                        error_code: Code::InvalidArgument as i32,
                        error_message: "the request names no message_request".into(),
                    }),
                };
                let response = ServerReflectionResponse {
                    valid_host: request.host.clone(),
                    original_request: Some(request),
                    message_response: Some(answer),
                };
                if tx.send(Ok(response)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

impl proto::v1::ServerReflection for Service {
    type ServerReflectionInfoStream = volley::BoxStream<ServerReflectionResponse>;

    async fn server_reflection_info(
        &self,
        request: Request<Streaming<ServerReflectionRequest>>,
    ) -> Result<Response<Self::ServerReflectionInfoStream>, Status> {
        self.info(request).await
    }
}

impl proto::v1alpha::ServerReflection for Service {
    type ServerReflectionInfoStream = volley::BoxStream<ServerReflectionResponse>;

    async fn server_reflection_info(
        &self,
        request: Request<Streaming<ServerReflectionRequest>>,
    ) -> Result<Response<Self::ServerReflectionInfoStream>, Status> {
        self.info(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::FieldDescriptorProto;

    fn file(name: &str, package: &str, deps: &[&str]) -> FileDescriptorProto {
        FileDescriptorProto {
            name: Some(name.into()),
            package: Some(package.into()),
            dependency: deps.iter().map(|d| (*d).to_owned()).collect(),
            ..Default::default()
        }
    }

    fn names(encoded: &[Vec<u8>]) -> Vec<String> {
        encoded
            .iter()
            .map(|b| {
                FileDescriptorProto::decode(&b[..])
                    .map(|f| f.name().to_owned())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// A file comes with every file it depends on, directly or not, each once; nested types
    /// and extensions are found; a missing dependency fails the build.
    #[test]
    fn transitive_dependencies_nested_symbols_and_extensions() {
        let mut a = file("a.proto", "pkg.a", &["b.proto", "c.proto"]);
        a.message_type.push(DescriptorProto {
            name: Some("Outer".into()),
            nested_type: vec![DescriptorProto {
                name: Some("Inner".into()),
                ..Default::default()
            }],
            ..Default::default()
        });
        let mut b = file("b.proto", "pkg.b", &["c.proto"]);
        b.extension.push(FieldDescriptorProto {
            name: Some("note".into()),
            number: Some(1000),
            extendee: Some(".pkg.c.Base".into()),
            ..Default::default()
        });
        let mut c = file("c.proto", "pkg.c", &[]);
        c.message_type.push(DescriptorProto {
            name: Some("Base".into()),
            ..Default::default()
        });
        let set = FileDescriptorSet {
            file: vec![c.clone(), b.clone(), a.clone()],
        };
        let reflection = Builder::new()
            .register_encoded_file_descriptor_set(&set.encode_to_vec())
            .build()
            .expect("complete");
        let index = &reflection.index;
        assert_eq!(
            names(&index.with_dependencies("a.proto")),
            ["a.proto", "b.proto", "c.proto"]
        );
        assert_eq!(index.symbols["pkg.a.Outer.Inner"], "a.proto");
        assert_eq!(index.symbols["pkg.b.note"], "b.proto");
        assert_eq!(index.extensions["pkg.c.Base"][&1000], "b.proto");
        let answer = index.answer(&MessageRequest::AllExtensionNumbersOfType(
            "pkg.c.Base".into(),
        ));
        assert_eq!(
            answer,
            MessageResponse::AllExtensionNumbersResponse(ExtensionNumberResponse {
                base_type_name: "pkg.c.Base".into(),
                extension_number: vec![1000],
            })
        );

        let incomplete = FileDescriptorSet { file: vec![a, b] };
        let err = Builder::new()
            .register_encoded_file_descriptor_set(&incomplete.encode_to_vec())
            .build()
            .expect_err("c.proto is missing");
        assert!(err.to_string().contains("c.proto"), "{err}");
    }
}
