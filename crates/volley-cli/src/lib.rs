//! `volley`, the command-line tool: list, describe and call the services of any gRPC server,
//! and check its health. The binary (`src/main.rs`) parses arguments; this library does the
//! work, so that tests can run it in-process.
//!
//! Schemas come from the server's reflection service or from `.proto` files ([`schema`]);
//! requests and responses are JSON, converted with `prost-reflect` and carried through
//! Volley's typed call API as encoded bytes ([`raw::Raw`]).

pub mod bench;
pub mod call;
pub mod describe;
pub mod health;
pub mod lean;
pub mod raw;
pub mod schema;

use std::path::PathBuf;
use std::time::Duration;

use volley::{Channel, ClientTlsConfig, Code, Status};

/// Why a command failed, and the process's exit code for it.
#[derive(Debug)]
pub enum Error {
    /// Bad arguments or input (exit code 2, as for a usage error).
    Usage(String),
    /// A call failed with this status (exit code: the status code), while doing `what`.
    Status(Status, String),
}

impl Error {
    /// A usage error.
    pub fn usage(message: impl Into<String>) -> Error {
        Error::Usage(message.into())
    }

    /// A failed call.
    pub fn status(status: Status, what: impl Into<String>) -> Error {
        Error::Status(status, what.into())
    }

    /// The process's exit code.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            Error::Status(status, _) => status.code() as i32,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Usage(message) => f.write_str(message),
            Error::Status(status, what) => write!(f, "{what}: {status}"),
        }
    }
}

impl std::error::Error for Error {}

/// How to reach the server.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// No TLS (`--plaintext`). Default: TLS, trusting the system's CA certificates.
    pub plaintext: bool,
    /// Trust this CA certificate (PEM) instead of the system's (`--cacert`).
    pub cacert: Option<PathBuf>,
    /// The client certificate and key (PEM) for mutual TLS (`--cert`, `--key`).
    pub cert: Option<PathBuf>,
    /// See `cert`.
    pub key: Option<PathBuf>,
    /// The name to verify the server's certificate against (`--servername`). Default: the
    /// target's host.
    pub servername: Option<String>,
    /// How long connecting may take (`--connect-timeout`). Default: 10 s.
    pub connect_timeout: Option<Duration>,
    /// Accept any server certificate (`--insecure`): encrypted, but unauthenticated.
    /// Default: false.
    pub insecure: bool,
}

fn read(path: &PathBuf) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::usage(format!("cannot read {}: {e}", path.display())))
}

/// A channel to `address`: `host:port`, or any target a [`Channel`] takes (`dns:///`,
/// `unix:`, `ipv4:`...).
pub fn connect(address: &str, options: &ConnectOptions) -> Result<Channel, Error> {
    let mut builder = Channel::builder(address)
        .connect_timeout(options.connect_timeout.unwrap_or(Duration::from_secs(10)));
    if !options.plaintext {
        let mut tls = ClientTlsConfig::new();
        if let Some(ca) = &options.cacert {
            tls = tls.ca_certificate(volley::Certificate::from_pem(read(ca)?));
        }
        match (&options.cert, &options.key) {
            (Some(cert), Some(key)) => {
                tls = tls.identity(volley::Identity::from_pem(read(cert)?, read(key)?));
            }
            (None, None) => {}
            _ => return Err(Error::usage("--cert and --key go together")),
        }
        if let Some(name) = &options.servername {
            tls = tls.domain_name(name.clone());
        }
        if options.insecure {
            tls = tls.danger_accept_invalid_certs(true);
        }
        builder = builder.tls_config(tls);
    }
    builder
        .build()
        .map_err(|e| Error::usage(format!("bad address {address:?}: {e}")))
}

/// The server's channel, for what needs one: reflection, calls.
fn needs_server(channel: Option<&Channel>) -> Result<&Channel, Error> {
    channel.ok_or_else(|| {
        Error::usage("no server address: give one, or the schema with --proto or --protoset")
    })
}

/// The schema for `symbol`: from the files when the source names some, else from the
/// server's reflection (which needs `channel`).
pub async fn schema_for(
    channel: Option<&Channel>,
    source: &schema::SchemaSource,
    symbol: &str,
) -> Result<schema::Schema, Error> {
    if source.is_reflection() {
        let name = describe::normalize(symbol);
        let mut reflection = schema::Reflection::new(needs_server(channel)?.clone());
        match reflection.schema_for(&name).await {
            // Some servers (grpcio's) do not resolve a method's name: ask for its service.
            Err(Error::Status(status, _)) if status.code() == Code::NotFound => {
                match name.rsplit_once('.') {
                    Some((parent, _)) => reflection.schema_for(parent).await,
                    None => Err(Error::Status(status, "reflection".into())),
                }
            }
            other => other,
        }
    } else {
        schema::from_files(source)
    }
}

/// `volley list`: the server's services, or a service's methods (full names, with their
/// kind).
pub async fn list(
    channel: Option<&Channel>,
    source: &schema::SchemaSource,
    service: Option<&str>,
) -> Result<Vec<String>, Error> {
    let Some(service) = service else {
        return if source.is_reflection() {
            schema::Reflection::new(needs_server(channel)?.clone())
                .list_services()
                .await
        } else {
            Ok(schema::file_services(&schema::from_files(source)?))
        };
    };
    let schema = schema_for(channel, source, service).await?;
    let name = describe::normalize(service);
    let found = schema
        .pool
        .get_service_by_name(&name)
        .ok_or_else(|| Error::status(Status::not_found(format!("no service {name}")), "list"))?;
    Ok(found
        .methods()
        .map(|m| format!("{} ({})", m.full_name(), describe::kind(&m)))
        .collect())
}

/// `volley describe`: `symbol` as `.proto` text.
pub async fn describe_symbol(
    channel: Option<&Channel>,
    source: &schema::SchemaSource,
    symbol: &str,
) -> Result<String, Error> {
    let schema = schema_for(channel, source, symbol).await?;
    let found = describe::find(&schema.pool, symbol).ok_or_else(|| {
        Error::status(
            Status::new(Code::NotFound, format!("no symbol {symbol}")),
            "describe",
        )
    })?;
    Ok(describe::describe(&found))
}
