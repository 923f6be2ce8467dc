//! Where the CLI learns a server's services and messages: the server's reflection service
//! (`grpc.reflection.v1`, falling back to `v1alpha`), `.proto` files (parsed with `protox`, no
//! `protoc`), or a protoset (an encoded `FileDescriptorSet`).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use prost::Message;
use prost_reflect::DescriptorPool;
use prost_types::{FileDescriptorProto, FileDescriptorSet};
use tokio_stream::StreamExt;
use volley::{Channel, Code, Status};
use volley_reflection::proto::v1::server_reflection_request::MessageRequest;
use volley_reflection::proto::v1::server_reflection_response::MessageResponse;
use volley_reflection::proto::v1::{ServerReflectionRequest, ServerReflectionResponse};

use crate::Error;

/// Where the schema comes from.
#[derive(Debug, Clone, Default)]
pub struct SchemaSource {
    /// `.proto` files to parse (`--proto`); none means reflection or a protoset.
    pub protos: Vec<PathBuf>,
    /// Where their imports are looked up (`--import-path`; the current folder when none).
    pub import_paths: Vec<PathBuf>,
    /// An encoded `FileDescriptorSet` (`--protoset`).
    pub protoset: Option<PathBuf>,
}

impl SchemaSource {
    /// Whether the schema comes from the server.
    pub fn is_reflection(&self) -> bool {
        self.protos.is_empty() && self.protoset.is_none()
    }
}

/// A schema: the descriptors known so far, and the server's service names when they came
/// from reflection.
#[derive(Debug)]
pub struct Schema {
    /// Every file, message, enum and service known.
    pub pool: DescriptorPool,
}

/// The schema from files (`--proto` or `--protoset`).
pub fn from_files(source: &SchemaSource) -> Result<Schema, Error> {
    let mut pool = DescriptorPool::new();
    if let Some(path) = &source.protoset {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::usage(format!("cannot read {}: {e}", path.display())))?;
        let set = FileDescriptorSet::decode(&bytes[..])
            .map_err(|e| Error::usage(format!("{} is not a protoset: {e}", path.display())))?;
        pool.add_file_descriptor_set(set)
            .map_err(|e| Error::usage(format!("{}: {e}", path.display())))?;
    }
    if !source.protos.is_empty() {
        let includes = if source.import_paths.is_empty() {
            vec![PathBuf::from(".")]
        } else {
            source.import_paths.clone()
        };
        let set = protox::compile(&source.protos, &includes)
            .map_err(|e| Error::usage(format!("cannot parse the .proto files: {e}")))?;
        pool.add_file_descriptor_set(set)
            .map_err(|e| Error::usage(format!("the .proto files: {e}")))?;
    }
    Ok(Schema { pool })
}

/// The service names in a schema from files (every service of every file).
pub fn file_services(schema: &Schema) -> Vec<String> {
    let mut names: Vec<String> = schema
        .pool
        .services()
        .map(|s| s.full_name().to_owned())
        .collect();
    names.sort();
    names
}

/// A client of a server's reflection service: v1, or v1alpha for servers without v1.
#[derive(Debug, Clone)]
pub struct Reflection {
    channel: Channel,
    /// Whether v1 answered UNIMPLEMENTED (and v1alpha is used).
    alpha: bool,
}

impl Reflection {
    /// A reflection client over `channel`.
    pub fn new(channel: Channel) -> Reflection {
        Reflection {
            channel,
            alpha: false,
        }
    }

    /// One request, one response (on a stream of its own).
    async fn ask(&mut self, request: MessageRequest) -> Result<MessageResponse, Error> {
        let message = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(request),
        };
        let response = loop {
            let requests = tokio_stream::iter([message.clone()]);
            let result = if self.alpha {
                volley_reflection::proto::v1alpha::ServerReflectionClient::new(self.channel.clone())
                    .server_reflection_info(requests)
                    .await
            } else {
                volley_reflection::proto::v1::ServerReflectionClient::new(self.channel.clone())
                    .server_reflection_info(requests)
                    .await
            };
            let first = match result {
                Ok(response) => response.into_inner().next().await,
                Err(status) => Some(Err(status)),
            };
            match first {
                Some(Err(status)) if status.code() == Code::Unimplemented && !self.alpha => {
                    self.alpha = true;
                }
                Some(Ok(response)) => break response,
                Some(Err(status)) => {
                    return Err(Error::status(
                        status,
                        "the server's reflection service failed",
                    ));
                }
                None => {
                    return Err(Error::status(
                        Status::unknown("the reflection stream ended without an answer"),
                        "the server's reflection service failed",
                    ));
                }
            }
        };
        match response {
            ServerReflectionResponse {
                message_response: Some(MessageResponse::ErrorResponse(e)),
                ..
            } => Err(Error::status(
                Status::new(Code::from_i32(e.error_code), e.error_message),
                "reflection",
            )),
            ServerReflectionResponse {
                message_response: Some(answer),
                ..
            } => Ok(answer),
            _ => Err(Error::status(
                Status::internal("an empty reflection response"),
                "reflection",
            )),
        }
    }

    /// The services the server lists.
    pub async fn list_services(&mut self) -> Result<Vec<String>, Error> {
        match self
            .ask(MessageRequest::ListServices(String::new()))
            .await?
        {
            MessageResponse::ListServicesResponse(list) => {
                let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
                names.sort();
                Ok(names)
            }
            _ => Err(Error::status(
                Status::internal("an unexpected answer to ListServices"),
                "reflection",
            )),
        }
    }

    async fn files(&mut self, request: MessageRequest) -> Result<Vec<FileDescriptorProto>, Error> {
        match self.ask(request).await? {
            MessageResponse::FileDescriptorResponse(files) => files
                .file_descriptor_proto
                .iter()
                .map(|bytes| {
                    FileDescriptorProto::decode(&bytes[..]).map_err(|e| {
                        Error::status(
                            Status::internal(format!("a bad file descriptor: {e}")),
                            "reflection",
                        )
                    })
                })
                .collect(),
            _ => Err(Error::status(
                Status::internal("an unexpected answer to a file request"),
                "reflection",
            )),
        }
    }

    /// The schema of the file that defines `symbol`, with every file it imports.
    pub async fn schema_for(&mut self, symbol: &str) -> Result<Schema, Error> {
        let first = self
            .files(MessageRequest::FileContainingSymbol(symbol.to_owned()))
            .await?;
        let mut files: HashMap<String, FileDescriptorProto> = HashMap::new();
        let mut missing: Vec<String> = Vec::new();
        for file in first {
            files.insert(file.name().to_owned(), file);
        }
        let mut asked: HashSet<String> = HashSet::new();
        loop {
            missing.clear();
            for file in files.values() {
                for dep in &file.dependency {
                    if !files.contains_key(dep) && !asked.contains(dep) {
                        missing.push(dep.clone());
                    }
                }
            }
            if missing.is_empty() {
                break;
            }
            for name in std::mem::take(&mut missing) {
                asked.insert(name.clone());
                for file in self.files(MessageRequest::FileByFilename(name)).await? {
                    files.entry(file.name().to_owned()).or_insert(file);
                }
            }
        }
        let mut pool = DescriptorPool::new();
        pool.add_file_descriptor_protos(files.into_values())
            .map_err(|e| {
                Error::status(
                    Status::internal(format!("the server's descriptors do not fit: {e}")),
                    "reflection",
                )
            })?;
        Ok(Schema { pool })
    }
}
